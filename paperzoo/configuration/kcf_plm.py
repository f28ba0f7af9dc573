"""KCF-PLM configuration (Wang et al., "Knowledge-aware Collaborative Filtering with Pre-trained Language Model for
Personalized Review-based Rating Prediction", IEEE TKDE 2023, arXiv 2308.02555; official code Wqxleo/KCF-PLM
`framework_kg_aspect/models.py`, `models_kg/bert.py`, `models_kg/RgcnW.py`): a rating regressor over a user's and an
item's documents (a pre-trained LM per side), a knowledge graph of users, items and aspects (one weighted R-GCN
layer), and the aspects of the pair (a transformer with user-item guided attention), fused in a factorization machine.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .seqrec import positive_int

TEXT_POOLINGS = ("pooler", "cls", "mean")
KG_INJECTIONS = ("cls_input", "pooled", "none")


def _probability(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} must be a probability in [0, 1)")


class KCFPLMConfig(PreTrainedConfig):
    r"""Configuration of KCF-PLM (official option in brackets where it has one).

    Args:
        text_config (`PreTrainedConfig` or `dict`): the document encoder, any `AutoModel` encoder config (BERT,
            RoBERTa, MiniLM...). Default: all-MiniLM-L6-v2's shape (BERT, 6 layers, 384 wide); load real weights
            with `KCFPLMForRatingPrediction.from_text_encoder(path, ...)`.
        shared_text_encoder (`bool`): one encoder (and head) for the user and the item documents; False (official):
            two towers.
        text_pooling (`str`): the document vector: "pooler" (the encoder's pooler output, official), "cls" (the first
            token's state) or "mean" (masked mean, as sentence encoders are trained).
        kg_injection (`str`) [cross_att]: where the other side's KG node enters a document tower: "cls_input" (the
            paper's: the [CLS] input embedding becomes (emb_CLS + W e) / 2, so every pair runs both encoders),
            "pooled" ((pooled document + W e) / 2 after the encoder: a frozen encoder's document encodings can be
            computed once, `encode_documents`) or "none".
        num_users, num_items (`int`): the rated users and items; id 0 is the unknown (cold-start) user / item, whose
            FM bias stays 0.
        num_entities (`int`) [n_entity]: KG nodes; node 0 is the unknown node (no edges).
        num_relations (`int`) [n_relation]: relation types (each direction its own).
        num_edges (`int`): KG edges stored with the model (buffers filled by `set_knowledge_graph`).
        kg_hidden_size (`int`) [ent_node_dim]: node feature and R-GCN width (64).
        kg_num_blocks (`int`) [num_blocks]: blocks of the block-diagonal relation weights (8).
        use_knowledge_graph (`bool`): False ablates the R-GCN: the node features are used as free embeddings.
        use_aspects (`bool`): False ablates the aspect encoder: the prediction reads the user-item vector alone.
        text_feature_size (`int`) [fc_dim]: each document's feature after the tower head (25).
        text_head_hidden_size (`int`): the tower head's hidden width (128).
        pair_size (`int`) [last_out_dim]: the user-item vector and the aspect vector (38).
        num_aspect_types (`int`): aspect types (official 4; paperzoo's ml-100k builder: genre, director, actor, other).
        aspect_max_len (`int`) [aspect_max_len]: aspects per pair the processor keeps (24); also sets the aspect
            class weight 1/aspect_max_len of the entity-type loss, as the official code.
        aspect_num_layers, aspect_num_heads, aspect_intermediate_size (`int`) [trans_layer_num, num_heads]: the
            aspect transformer (4, 4, 128).
        aspect_dropout_prob (`float`): its dropout (0.4).
        query_grad (`bool`) [query_grad]: the guided attention's query (the user-item vector) receives gradients;
            False (official): it is detached.
        hidden_dropout_prob (`float`) [drop_out]: the other dropouts (0.5).
        fm_factors (`int`): factors of the FM head's second-order term (10).
        entity_loss_weight (`float`): weight of the entity-type auxiliary loss (0.2; 0 turns it off).
        kernel_backend (`str`): "auto" | "reference" | "triton" for the R-GCN aggregation (paperzoo.kernels.rgcn).
    """

    model_type = "paperzoo_kcf_plm"
    keys_to_ignore_at_inference = ["rating_loss", "entity_loss", "aspect_attention"]
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", init_kwargs={
            "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
            "intermediate_size": 1536, "max_position_embeddings": 512}),
    }

    text_config: dict | PreTrainedConfig | None = None
    shared_text_encoder: bool = False
    text_pooling: str = "pooler"
    kg_injection: str = "cls_input"
    num_users: int = 943
    num_items: int = 1682
    num_entities: int = 1
    num_relations: int = 1
    num_edges: int = 0
    kg_hidden_size: int = 64
    kg_num_blocks: int = 8
    use_knowledge_graph: bool = True
    use_aspects: bool = True
    text_feature_size: int = 25
    text_head_hidden_size: int = 128
    pair_size: int = 38
    num_aspect_types: int = 4
    aspect_max_len: int = 24
    aspect_num_layers: int = 4
    aspect_num_heads: int = 4
    aspect_intermediate_size: int = 128
    aspect_dropout_prob: float = 0.4
    query_grad: bool = False
    hidden_dropout_prob: float = 0.5
    fm_factors: int = 10
    entity_loss_weight: float = 0.2
    kernel_backend: str = "auto"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate()

    def validate(self):
        """ValueError naming the first field that cannot work."""
        for name in ("num_users", "num_items", "num_entities", "num_relations", "kg_hidden_size", "kg_num_blocks",
                     "text_feature_size", "text_head_hidden_size", "pair_size", "num_aspect_types", "aspect_max_len",
                     "aspect_num_layers", "aspect_num_heads", "aspect_intermediate_size", "fm_factors"):
            positive_int(name, getattr(self, name))
        if isinstance(self.num_edges, bool) or not isinstance(self.num_edges, int) or self.num_edges < 0:
            raise ValueError(f"num_edges={self.num_edges!r} must be an integer ≥ 0")
        if self.kg_hidden_size % self.kg_num_blocks:
            raise ValueError(f"kg_hidden_size={self.kg_hidden_size} is not divisible by "
                             f"kg_num_blocks={self.kg_num_blocks} (block-diagonal relation weights)")
        if (2 * self.kg_hidden_size) % self.aspect_num_heads:
            raise ValueError(f"aspect_num_heads={self.aspect_num_heads} must divide the aspect token width "
                             f"2·kg_hidden_size={2 * self.kg_hidden_size}")
        if self.kg_injection not in KG_INJECTIONS:
            raise ValueError(f"kg_injection={self.kg_injection!r} is not one of {KG_INJECTIONS}")
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling={self.text_pooling!r} is not one of {TEXT_POOLINGS}")
        for name in ("aspect_dropout_prob", "hidden_dropout_prob"):
            _probability(name, getattr(self, name))
        if isinstance(self.entity_loss_weight, bool) or not self.entity_loss_weight >= 0:
            raise ValueError(f"entity_loss_weight={self.entity_loss_weight!r} must be ≥ 0")
        for name in ("shared_text_encoder", "use_knowledge_graph", "use_aspects", "query_grad"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.kernel_backend not in ("auto", "reference", "triton"):
            raise ValueError(f"kernel_backend={self.kernel_backend!r} is not one of ('auto', 'reference', 'triton')")
        if not hasattr(self.text_config, "hidden_size"):
            raise ValueError(f"text_config={type(self.text_config).__name__} has no hidden_size: it must be an "
                             f"encoder config AutoModel builds")


__all__ = ["KCFPLMConfig"]
