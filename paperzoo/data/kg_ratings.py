"""Ratings, text documents and a knowledge graph for KCF-PLM (review-based rating prediction with a pre-trained LM and
a knowledge graph), offline: recbole's ml-100k atomic files (inside the `recbole` wheel, never imported) or a user's
files.

`build_kg_rating_data()` returns a `KGRatingData`:
- ratings split at random 80/10/10 (the KCF-PLM paper's protocol), deterministic per seed;
- an item document (title, year, genres and what the knowledge graph says about the film, in words) and a user
  document (the user's TRAIN ratings, most recent first) per key: ml-100k has no reviews, so these stand in for the
  review documents the paper encodes with its language model;
- a graph of users, items, genres and knowledge-graph entities: the KG triples, item -> genre edges and user -> item
  "rated" edges of the train split only (weight rating / max rating), every relation with its inverse;
- the aspects of every item: its KG neighbours typed genre / director / actor / other.

Files (CSV, Parquet, or recbole atomic files `.inter/.item/.kg/.link`; the recbole column names are accepted too):
- ratings: user, item, rating, timestamp (recbole: user_id, item_id, rating, timestamp);
- items: item, title, optional year and genres (recbole: item_id, movie_title, release_year, class). `genres` is one
  string: split on '|' when it holds one (so "Science Fiction|Drama" keeps multi-word genres), else on whitespace
  (recbole's token_seq, "Animation Children's Comedy"); the genre "unknown" (ml-100k's placeholder) is dropped. A year
  that is not four digits (ml-100k has "unkonwn") is left out of the documents;
- kg: head, relation, tail (recbole: head_id, relation_id, tail_id);
- links: item, entity (recbole: item_id, entity_id): the item IS that KG entity (one node, "item:<key>").

Rules for bad input (ValueError naming the file, column, row and value): missing columns; empty files; empty ids,
titles, relations; non-numeric ratings or timestamps; ratings outside `rating_range`; duplicate (user, item) ratings
(an error, not a silent keep-the-latest: which rating is right is the caller's call, and a duplicated pair could land
in train and test at once); ratings of items missing from the items file; duplicate items; links whose item is not in
the items file, an item linked twice or an entity linked to two items; a linked entity that appears in no KG triple
("unknown entity id": a link must point into the KG); a KG given without links (nothing would connect it to the
items) or links without a KG; KG ids that collide with the node namespaces ("user:", "item:", "genre:") and KG
relation names that collide with the built-in ones ("rated", "has_genre", anything ending in "^-1"). KG triples
whose head or tail is not a linked item are fine: those entities become nodes of their own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .interactions import read_atomic, recbole_dataset_folder

SPLITS = ("train", "valid", "test")
ASPECT_TYPES = ("genre", "director", "actor", "other")
RATED, HAS_GENRE, INVERSE = "rated", "has_genre", "^-1"
_PREFIXES = ("user:", "item:", "genre:")

# canonical column -> accepted names (ours first, then recbole's atomic names)
_COLUMNS = {
    "ratings": {"user": ("user", "user_id"), "item": ("item", "item_id"), "rating": ("rating",),
                "timestamp": ("timestamp",)},
    "items": {"item": ("item", "item_id"), "title": ("title", "movie_title"), "year": ("year", "release_year"),
              "genres": ("genres", "class")},
    "kg": {"head": ("head", "head_id"), "relation": ("relation", "relation_id"), "tail": ("tail", "tail_id")},
    "links": {"item": ("item", "item_id"), "entity": ("entity", "entity_id")},
}
_OPTIONAL = {"items": ("year", "genres")}

# What a KG triple says about the item at one of its ends: (relation, side of the item) -> (singular, plural, aspect
# type). Freebase pairs such as film.film.directed_by / film.director.film say the same thing from the two ends.
# A noun of None is left out of the item document (genres are spelled out from the items file; the sequel/prequel
# links of recbole's ml-100k KG join unrelated films, e.g. Days of Thunder -> Chungking Express). An aspect type of
# None means "not an aspect": language, country and content rating are hubs shared by most films ("English",
# "United States", "R") that tell one film little from another, awards describe reception rather than content, and
# sequels/prequels are items, not aspects.
_ITEM_VIEW = {}
for _names, _noun, _aspect in [
        (("film.film.genre", "film.film_genre.films_in_this_genre"), None, "genre"),
        (("film.film.directed_by", "film.director.film"), ("director", "directors"), "director"),
        (("film.film.written_by", "film.writer.film"), ("writer", "writers"), "other"),
        (("film.film.produced_by", "film.producer.film"), ("producer", "producers"), "other"),
        (("film.film.actor", "film.actor.film"), ("actor", "actors"), "actor"),
        (("film.film.cinematography", "film.cinematographer.film"), ("cinematographer", "cinematographers"), "other"),
        (("film.film.production_companies", "film.production_company.films"),
         ("production company", "production companies"), "other"),
        (("film.film.subjects", "film.film_subject.films"), ("subject", "subjects"), "other"),
        (("film.film.award_nomination",), ("award nomination", "award nominations"), None),
        (("film.film.award_won",), ("award won", "awards won"), None),
        (("film.film.language",), ("language", "languages"), None),
        (("film.film.country",), ("country of production", "countries of production"), None),
        (("film.film.rating", "film.content_rating.film"), ("content rating", "content ratings"), None),
        (("film.film.sequel", "film.film.prequel"), None, None),
        (("film.film.prequel", "film.film.sequel"), None, None)]:
    # the first name has the film as head, the second (its Freebase inverse) as tail
    _ITEM_VIEW[(_names[0], "head")] = (_noun, _aspect)
    if len(_names) > 1:
        _ITEM_VIEW[(_names[1], "tail")] = (_noun, _aspect)
del _names, _noun, _aspect
_NOUN_ORDER = [v[0] for v in dict.fromkeys(v for v in _ITEM_VIEW.values()) if v[0] is not None]


@dataclass
class KGRatingData:
    """Ratings with a random split, per-key text documents, and a knowledge graph of users, items and entities.

    ratings: columns user (str), item (str), rating (float), timestamp (float), split ("train" / "valid" / "test"),
        in the input's row order.
    item_documents, user_documents: key -> text; a user's document reads the TRAIN ratings only ("" for a user
        without one).
    entities: node keys, the node id being the index: "user:<key>" for every user, "item:<key>" for every item (a
        linked KG entity is its item's node), then the other KG entities (their ids, e.g. Freebase mids) and the genre
        nodes "genre:<name>", each group sorted.
    relations: the K forward relation names ("rated", "has_genre", then the KG's), then their inverses
        (name + "^-1"): the inverse of relation r is (r + K) % 2K.
    edges: [E, 3] int64 (src node, dst node, relation id): every forward edge, then its inverse in the same order
        (edge j + E/2 is edge j reversed).
    edge_weights: [E] float32: rating / max rating for "rated" edges, 1 for the others.
    item_aspects: item -> [(entity key, aspect type id)]: the item's KG neighbours that are aspects, each once
        (with its first type when it plays several, e.g. director and writer), ordered by type (genre, director,
        actor, other), then by degree (most connected first), then by key.
    relation_aliases: KG relations folded into another's inverse because the KG holds them as exact inverse pairs,
        e.g. {"film.director.film": "film.film.directed_by^-1"}.
    """

    ratings: pd.DataFrame = field(repr=False)
    item_documents: dict[str, str] = field(repr=False)
    user_documents: dict[str, str] = field(repr=False)
    entities: list[str] = field(repr=False)
    relations: list[str]
    edges: np.ndarray = field(repr=False)
    edge_weights: np.ndarray = field(repr=False)
    item_aspects: dict[str, list[tuple[str, int]]] = field(repr=False)
    aspect_types: tuple[str, ...] = ASPECT_TYPES
    rating_range: tuple[float, float] = (1.0, 5.0)
    relation_aliases: dict[str, str] = field(default_factory=dict)
    entity_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.entity_index = {key: i for i, key in enumerate(self.entities)}

    @property
    def users(self) -> list[str]:
        """User keys in node order (node id of users[i] is i)."""
        return [key[5:] for key in self.entities if key.startswith("user:")]

    @property
    def items(self) -> list[str]:
        """Item keys in node order (node id of items[i] is len(users) + i)."""
        return [key[5:] for key in self.entities if key.startswith("item:")]

    def split(self, name: str) -> pd.DataFrame:
        """The rating rows of one split ("train", "valid" or "test"), index reset."""
        if name not in SPLITS:
            raise ValueError(f"split name={name!r} must be one of {SPLITS}")
        return self.ratings[self.ratings["split"] == name].reset_index(drop=True)

    def entity_id(self, key: str) -> int:
        """The node id of an entity key ("user:196", "item:242", "genre:Comedy", "m.0bln8")."""
        if key not in self.entity_index:
            raise ValueError(f"entity key={key!r} is not a node of the graph (keys look like 'user:<user>', "
                             f"'item:<item>', 'genre:<genre>' or a KG entity id)")
        return self.entity_index[key]

    def inverse_relation(self, relation: int) -> int:
        """The id of the inverse of relation id `relation`."""
        k = len(self.relations) // 2
        if not 0 <= relation < 2 * k:
            raise ValueError(f"relation={relation!r} is not a relation id in [0, {2 * k})")
        return (relation + k) % (2 * k)

    def __repr__(self):
        counts = self.ratings["split"].value_counts()
        return (f"KGRatingData(users={len(self.user_documents)}, items={len(self.item_documents)}, ratings="
                f"{len(self.ratings)} ({'/'.join(str(int(counts.get(s, 0))) for s in SPLITS)}), "
                f"entities={len(self.entities)}, relations={len(self.relations)}, edges={len(self.edges)})")


# ---------------------------------------------------------------------------------------------------------- reading
def _read(table: str, source, required: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """(frame with canonical column names, stripped strings; label for messages) of one input table."""
    if isinstance(source, pd.DataFrame):
        label = f"{table} DataFrame"
        frame = source.astype(object).where(source.notna(), "").astype(str)
    else:
        path = Path(source)
        label = f"{table} file {path.name}"
        if not path.is_file():
            raise ValueError(f"{table}={str(source)!r} is not a file")
        try:
            if path.suffix in (".inter", ".item", ".kg", ".link"):
                frame = read_atomic(path)
            elif path.suffix == ".parquet":
                raw = pd.read_parquet(path)
                frame = raw.astype(object).where(raw.notna(), "").astype(str)
            else:
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{label} is empty") from None
    columns = {}
    for name, accepted in _COLUMNS[table].items():
        found = next((c for c in accepted if c in frame.columns), None)
        if found is None and name in required:
            raise ValueError(f"{label}: no column {name!r} (accepted names: {list(accepted)}; columns: "
                             f"{list(frame.columns)})")
        if found is not None:
            columns[name] = frame[found].astype(str).str.strip()
    if len(frame) == 0:
        raise ValueError(f"{label} is empty (a header and no rows)")
    return pd.DataFrame(columns).reset_index(drop=True), label


def _first(mask) -> int:
    return int(np.asarray(mask).argmax())


def _no_empty(frame: pd.DataFrame, label: str, columns) -> None:
    for column in columns:
        empty = frame[column] == ""
        if empty.any():
            raise ValueError(f"{label}: row {_first(empty)}: column {column!r} is empty")


def _numbers(frame: pd.DataFrame, label: str, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0.0))
    if bad.any():
        row = _first(bad)
        raise ValueError(f"{label}: row {row}: column {column!r} holds {frame[column].iloc[row]!r}, not a number")
    return values.astype(float)


def _sorted_keys(keys) -> list[str]:
    """Keys in numeric order when all are integers ("1", "2", ..., "10"), else in string order."""
    keys = pd.unique(np.asarray(keys, dtype=object))
    if all(re.fullmatch(r"-?\d+", k) for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _check_arguments(split, rating_range, max_user_document_items, seed):
    if not isinstance(split, (tuple, list)) or len(split) != 3:
        raise ValueError(f"split={split!r} must be three fractions (train, valid, test)")
    for name, value in zip(SPLITS, split):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"split={tuple(split)!r}: the {name} fraction {value!r} must be a number >= 0")
    if abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split={tuple(split)!r} must sum to 1 (sums to {sum(split)!r})")
    if (not isinstance(rating_range, (tuple, list)) or len(rating_range) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                   for v in rating_range)
            or not 0 <= rating_range[0] < rating_range[1]):
        raise ValueError(f"rating_range={rating_range!r} must be two numbers 0 <= low < high (edge weights are "
                         f"rating / high, which must be >= 0)")
    if max_user_document_items is not None and (isinstance(max_user_document_items, bool)
                                                or not isinstance(max_user_document_items, int)
                                                or max_user_document_items < 1):
        raise ValueError(f"max_user_document_items={max_user_document_items!r} must be None or an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} must be an integer")


def _sources(source, ratings, items, kg, links):
    """(ratings, items, kg, links) sources: the user's, or a recbole dataset's atomic files."""
    if ratings is not None:
        if items is None:
            raise ValueError("items=None: the items file (item, title, ...) is required with ratings= (the item "
                             "documents need the titles)")
        return ratings, items, kg, links
    if items is not None or kg is not None or links is not None:
        raise ValueError("items=, kg= or links= given without ratings=: pass the ratings file too (or none of them "
                         "to read the recbole dataset `source`)")
    path = Path(source)
    folder = path if path.is_dir() else None
    if folder is None:
        if not isinstance(source, str) or "/" in source or "." in source:
            raise ValueError(f"source={str(source)!r} is neither a folder of recbole atomic files nor a recbole "
                             f"example dataset name such as 'ml-100k'")
        folder = recbole_dataset_folder(source)
    name = folder.name
    files = [folder / f"{name}.{ext}" for ext in ("inter", "item", "kg", "link")]
    for file in files[:2]:
        if not file.is_file():
            raise ValueError(f"source={str(source)!r}: no {file.name} in {folder}")
    kg, links = (f if f.is_file() else None for f in files[2:])
    return files[0], files[1], kg, links


# ---------------------------------------------------------------------------------------------------------- building
def _load_ratings(ratings, rating_range):
    frame, label = _read("ratings", ratings, ("user", "item", "rating", "timestamp"))
    _no_empty(frame, label, ("user", "item"))
    frame["rating"] = _numbers(frame, label, "rating")
    frame["timestamp"] = _numbers(frame, label, "timestamp")
    low, high = rating_range
    outside = (frame["rating"] < low) | (frame["rating"] > high)
    if outside.any():
        row = _first(outside)
        raise ValueError(f"{label}: row {row}: column 'rating' holds {float(frame['rating'].iloc[row])!r}, outside "
                         f"rating_range={tuple(rating_range)!r}")
    duplicated = frame.duplicated(["user", "item"], keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())
        first = frame.iloc[rows[0]]
        again = rows[1:][(frame["user"].iloc[rows[1:]] == first["user"]).to_numpy()
                         & (frame["item"].iloc[rows[1:]] == first["item"]).to_numpy()][0]
        raise ValueError(f"{label}: rows {rows[0]} and {again} both rate item {first['item']!r} by user "
                         f"{first['user']!r}: duplicate (user, item) ratings (keep one, e.g. the latest)")
    return frame, label


def _genres(value: str) -> list[str]:
    """ "Sci-Fi|Science Fiction" or "Animation Children's Comedy" -> the genres, once each, "unknown" left out."""
    parts = (part.strip() for part in (value.split("|") if "|" in value else value.split()))
    return list(dict.fromkeys(part for part in parts if part and part.lower() != "unknown"))


def _load_items(items):
    frame, label = _read("items", items, ("item", "title"))
    _no_empty(frame, label, ("item", "title"))
    duplicated = frame["item"].duplicated()
    if duplicated.any():
        row = _first(duplicated)
        raise ValueError(f"{label}: row {row}: column 'item' repeats item {frame['item'].iloc[row]!r}")
    year = frame["year"] if "year" in frame else pd.Series("", index=frame.index)
    frame["year"] = year.where(year.str.fullmatch(r"\d{4}"), "")
    genres = frame["genres"] if "genres" in frame else pd.Series("", index=frame.index)
    frame["genres"] = [_genres(value) for value in genres]
    return frame, label


def _load_graph_files(kg, links, item_keys: set[str]):
    """(KG triples with endpoints as node keys, {entity id: "item:<key>"}) or (None, {})."""
    if kg is None and links is None:
        return None, {}
    if kg is None or links is None:
        missing = "kg" if kg is None else "links"
        raise ValueError(f"{missing}=None while {'links' if kg is None else 'kg'} is given: the KG and the item -> "
                         f"entity links come together (without links no KG entity connects to an item)")
    triples, kg_label = _read("kg", kg, ("head", "relation", "tail"))
    _no_empty(triples, kg_label, ("head", "relation", "tail"))
    for column in ("head", "tail"):
        clash = triples[column].str.startswith(_PREFIXES)
        if clash.any():
            row = _first(clash)
            raise ValueError(f"{kg_label}: row {row}: column {column!r} holds {triples[column].iloc[row]!r}, which "
                             f"collides with the node names {_PREFIXES}")
    reserved = triples["relation"].isin([RATED, HAS_GENRE]) | triples["relation"].str.endswith(INVERSE)
    if reserved.any():
        row = _first(reserved)
        raise ValueError(f"{kg_label}: row {row}: column 'relation' holds {triples['relation'].iloc[row]!r}, a "
                         f"reserved relation name ({RATED!r}, {HAS_GENRE!r}, '*{INVERSE}')")
    link, link_label = _read("links", links, ("item", "entity"))
    _no_empty(link, link_label, ("item", "entity"))
    unknown = ~link["item"].isin(item_keys)
    if unknown.any():
        row = _first(unknown)
        raise ValueError(f"{link_label}: row {row}: column 'item' holds {link['item'].iloc[row]!r}, an item that is "
                         f"in neither the ratings nor the items file")
    for column, what in (("item", "is linked to two entities"), ("entity", "is linked to two items")):
        duplicated = link[column].duplicated()
        if duplicated.any():
            row = _first(duplicated)
            raise ValueError(f"{link_label}: row {row}: {column} {link[column].iloc[row]!r} {what}")
    known = pd.Index(pd.unique(pd.concat([triples["head"], triples["tail"]], ignore_index=True)))
    absent = ~link["entity"].isin(known)
    if absent.any():
        row = _first(absent)
        raise ValueError(f"{link_label}: row {row}: column 'entity' holds {link['entity'].iloc[row]!r}, an unknown "
                         f"entity id in the KG file {kg_label.split(' file ', 1)[-1]} (it appears in no triple)")
    to_item = dict(zip(link["entity"], "item:" + link["item"]))
    triples = triples.drop_duplicates().reset_index(drop=True)
    return triples, to_item


def _fold_inverse_pairs(triples: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop the second relation of every exact inverse pair (r2 holds (t, h) for exactly the (h, t) of r1), keeping
    the one whose heads are items more often (film.film.directed_by over film.director.film), then the name first:
    r1's inverse edges carry the same messages. Returns (triples, {dropped: kept + "^-1"})."""
    counts = triples["relation"].value_counts()
    reverse = triples.rename(columns={"head": "tail", "tail": "head", "relation": "other"})
    matches = triples.merge(reverse, on=["head", "tail"]).groupby(["relation", "other"]).size()
    item_heads = triples["head"].str.startswith("item:").groupby(triples["relation"]).mean()
    aliases, kept = {}, set()
    for (r1, r2), n in matches.items():
        if r1 == r2 or n != counts[r1] or n != counts[r2] or {r1, r2} & (set(aliases) | kept):
            continue  # a symmetric relation, a partial match, or a relation already in a pair
        keep, drop = sorted((r1, r2), key=lambda r: (-item_heads[r], r))
        aliases[drop] = keep + INVERSE
        kept.add(keep)
    return triples[~triples["relation"].isin(list(aliases))].reset_index(drop=True), aliases


def _split_labels(n: int, fractions, seed) -> np.ndarray:
    """A seeded random assignment of n rows to train / valid / test in the given fractions (cumulative rounding)."""
    bounds = np.round(np.cumsum(fractions)[:2] * n).astype(int).clip(0, n)
    order = np.random.default_rng(seed).permutation(n)
    labels = np.empty(n, dtype=object)
    labels[order[:bounds[0]]] = "train"
    labels[order[bounds[0]:bounds[1]]] = "valid"
    labels[order[bounds[1]:]] = "test"
    return labels


def _number_text(values: pd.Series) -> pd.Series:
    """4.0 -> "4", 3.5 -> "3.5"."""
    return values.astype(str).str.replace(r"\.0$", "", regex=True)


def _user_documents(train: pd.DataFrame, names: pd.Series, users: list[str], high: float, limit) -> dict[str, str]:
    """user -> "Toy Story (1995): 5/5. GoldenEye (1995): 3/5." from the train rows, most recent first (ties: later
    rows first), so that a tokenizer's truncation drops the oldest."""
    rows = train.assign(row=np.arange(len(train))).sort_values(["user", "timestamp", "row"],
                                                               ascending=[True, False, False], kind="stable")
    if limit is not None:
        rows = rows.groupby("user", sort=False).head(limit)
    scale = _number_text(pd.Series([float(high)])).iloc[0]
    text = rows["item"].map(names) + ": " + _number_text(rows["rating"]) + "/" + scale
    joined = text.groupby(rows["user"], sort=False).agg(". ".join) + "."
    return {user: joined.get(user, "") for user in users}


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _item_documents(items: pd.DataFrame, names: pd.Series, view: pd.DataFrame) -> dict[str, str]:
    """item -> "Toy Story (1995). Genres: Animation, Children's and Comedy. Its knowledge-graph entry lists
    1 director, 2 writers, 12 actors, ... and 1 language." (Entity ids have no names: the KG is told in counts.)"""
    counts = view[view["noun"].notna()].groupby(["item", "noun"], sort=False).size()
    phrases: dict[str, list[tuple[int, str]]] = {}
    order = {noun: i for i, noun in enumerate(_NOUN_ORDER)}
    for (item, noun), n in counts.items():
        singular, plural = noun
        phrases.setdefault(item, []).append((order.get(noun, len(order)), f"{n} {singular if n == 1 else plural}"))
    documents = {}
    for item, genres in zip(items["item"], items["genres"]):
        parts = [names[item] + "."]
        if genres:
            parts.append(f"Genre{'s' if len(genres) > 1 else ''}: {_and(genres)}.")
        if item in phrases:
            parts.append(f"Its knowledge-graph entry lists {_and([p for _, p in sorted(phrases[item])])}.")
        documents[item] = " ".join(parts)
    return documents


def _item_view(triples: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, neighbour, relation, side of the item) of the KG triples with an item at an end:
    columns item (key), neighbour (node key), noun ((singular, plural) or None), aspect (type id or -1)."""
    frames = []
    for side, other in (("head", "tail"), ("tail", "head")):
        at = triples[triples[side].str.startswith("item:")]
        frames.append(pd.DataFrame({"item": at[side].str[5:], "neighbour": at[other], "relation": at["relation"],
                                    "side": side}))
    view = pd.concat(frames, ignore_index=True)
    known = [_ITEM_VIEW.get(key) for key in zip(view["relation"], view["side"])]
    generic = {}  # relations outside the table: "3 based on links" / "2 incoming based on links"
    nouns, aspects = [], []
    for (relation, side), entry in zip(zip(view["relation"], view["side"]), known):
        if entry is None:
            if (relation, side) not in generic:
                words = relation.rsplit(".", 1)[-1].replace("_", " ").strip() or relation
                words = words if side == "head" else f"incoming {words}"
                generic[(relation, side)] = (f"{words} link", f"{words} links")
            nouns.append(generic[(relation, side)])
            aspects.append(-1)
        else:
            nouns.append(entry[0])
            aspects.append(-1 if entry[1] is None else ASPECT_TYPES.index(entry[1]))
    view["noun"], view["aspect"] = nouns, aspects
    return view.drop_duplicates(["item", "neighbour", "noun", "aspect"]).reset_index(drop=True)


def build_kg_rating_data(source: str | Path = "ml-100k", *, ratings=None, items=None, kg=None, links=None,
                         seed: int = 0, split=(0.8, 0.1, 0.1), rating_range=(1.0, 5.0),
                         max_user_document_items: int | None = None) -> KGRatingData:
    """The KCF-PLM dataset: ratings with a seeded random split, item and user documents, a knowledge graph and the
    items' aspects.

    source: a recbole example dataset name ("ml-100k", read from the installed recbole wheel) or a folder of recbole
        atomic files `<folder name>.inter/.item[/.kg/.link]`; read only when `ratings` is None.
    ratings, items, kg, links: the user's files (CSV, Parquet or recbole atomic; or DataFrames) with the columns in
        the module docstring; `items` is required with `ratings`, `kg` and `links` come together or not at all
        (without them: a graph of users, items and genres).
    seed: the seed of the random split. split: the (train, valid, test) fractions, >= 0, summing to 1.
    rating_range: (low, high) with 0 <= low < high; every rating must lie in it; "rated" edges weigh rating / high.
    max_user_document_items: the most recent train ratings a user document keeps (None: all).
    """
    _check_arguments(split, rating_range, max_user_document_items, seed)
    ratings, items, kg, links = _sources(source, ratings, items, kg, links)
    frame, ratings_label = _load_ratings(ratings, rating_range)
    item_table, items_label = _load_items(items)
    item_set = set(item_table["item"])
    unknown = ~frame["item"].isin(item_set)
    if unknown.any():
        row = _first(unknown)
        raise ValueError(f"{ratings_label}: row {row}: column 'item' holds {frame['item'].iloc[row]!r}, an item "
                         f"missing from the {items_label}")
    triples, to_item = _load_graph_files(kg, links, item_set)

    frame["split"] = _split_labels(len(frame), split, seed)
    train = frame[frame["split"] == "train"]

    # nodes: users, items, KG entities (linked ones are their item's node), genres; each group sorted
    users = _sorted_keys(frame["user"])
    item_keys = _sorted_keys(item_table["item"])
    genres = sorted({g for gs in item_table["genres"] for g in gs})
    aliases = {}
    if triples is not None:
        for column in ("head", "tail"):
            mapped = triples[column].map(to_item)
            triples[column] = mapped.where(mapped.notna(), triples[column])
        triples = triples.drop_duplicates().reset_index(drop=True)
        view = _item_view(triples)
        triples, aliases = _fold_inverse_pairs(triples)
        others = sorted(set(pd.unique(pd.concat([triples["head"], triples["tail"]], ignore_index=True)))
                        - {"item:" + k for k in item_keys})
        kg_relations = sorted(pd.unique(triples["relation"]))
    else:
        view = pd.DataFrame({"item": [], "neighbour": [], "noun": [], "aspect": []}, dtype=object)
        others, kg_relations = [], []
    entities = ([f"user:{u}" for u in users] + [f"item:{i}" for i in item_keys] + others
                + [f"genre:{g}" for g in genres])
    node = pd.Series(np.arange(len(entities), dtype=np.int64), index=pd.Index(entities))
    forward_names = [RATED, HAS_GENRE, *kg_relations]
    relation_id = {name: i for i, name in enumerate(forward_names)}

    # forward edges: (src, dst, relation, weight)
    genre_rows = item_table[["item", "genres"]].explode("genres").dropna()
    parts = [
        (node[("user:" + train["user"]).to_numpy()].to_numpy(), node[("item:" + train["item"]).to_numpy()].to_numpy(),
         np.full(len(train), relation_id[RATED]), (train["rating"] / float(rating_range[1])).to_numpy()),
        (node[("item:" + genre_rows["item"]).to_numpy()].to_numpy(),
         node[("genre:" + genre_rows["genres"]).to_numpy()].to_numpy(),
         np.full(len(genre_rows), relation_id[HAS_GENRE]), np.ones(len(genre_rows))),
    ]
    if triples is not None:
        parts.append((node[triples["head"].to_numpy()].to_numpy(), node[triples["tail"].to_numpy()].to_numpy(),
                      triples["relation"].map(relation_id).to_numpy(), np.ones(len(triples))))
    forward = pd.DataFrame({"src": np.concatenate([p[0] for p in parts]), "dst": np.concatenate([p[1] for p in parts]),
                            "rel": np.concatenate([p[2] for p in parts]), "w": np.concatenate([p[3] for p in parts])})
    forward = forward.drop_duplicates(["src", "dst", "rel"]).reset_index(drop=True)
    k = len(forward_names)
    src, dst, rel = (forward[c].to_numpy(np.int64) for c in ("src", "dst", "rel"))
    edges = np.concatenate([np.stack([src, dst, rel], 1), np.stack([dst, src, rel + k], 1)])  # [E, 3]
    weights = np.concatenate([forward["w"].to_numpy(), forward["w"].to_numpy()]).astype(np.float32)  # [E]
    degree = np.bincount(np.concatenate([src, dst]), minlength=len(entities))  # undirected, each edge once

    # aspects: the .item genres, then the KG neighbours typed by relation; never items or users
    genre_aspects = pd.DataFrame({"item": genre_rows["item"].to_numpy(),
                                  "neighbour": ("genre:" + genre_rows["genres"]).to_numpy(),
                                  "aspect": ASPECT_TYPES.index("genre")})
    kg_aspects = view.loc[(view["aspect"] >= 0) & ~view["neighbour"].str.startswith(("item:", "user:")),
                          ["item", "neighbour", "aspect"]]
    aspects = pd.concat([genre_aspects, kg_aspects], ignore_index=True)
    aspects["aspect"] = aspects["aspect"].astype(np.int64)
    aspects["degree"] = degree[node[aspects["neighbour"].to_numpy()].to_numpy()] if len(aspects) else []
    aspects = (aspects.sort_values(["item", "aspect", "degree", "neighbour"], ascending=[True, True, False, True])
               .drop_duplicates(["item", "neighbour"]))  # an entity once per item, with its first type
    grouped = {item: list(zip(g["neighbour"], g["aspect"].astype(int)))
               for item, g in aspects.groupby("item", sort=False)}
    item_aspects = {item: grouped.get(item, []) for item in item_keys}

    names = item_table.set_index("item")["title"] + np.where(item_table["year"] == "", "",
                                                            " (" + item_table["year"] + ")")
    return KGRatingData(
        ratings=frame[["user", "item", "rating", "timestamp", "split"]],
        item_documents=_item_documents(item_table.set_index("item").loc[item_keys].reset_index(), names, view),
        user_documents=_user_documents(train, names, users, rating_range[1], max_user_document_items),
        entities=entities,
        relations=forward_names + [name + INVERSE for name in forward_names],
        edges=edges,
        edge_weights=weights,
        item_aspects=item_aspects,
        rating_range=(float(rating_range[0]), float(rating_range[1])),
        relation_aliases=aliases,
    )


__all__ = ["ASPECT_TYPES", "KGRatingData", "build_kg_rating_data"]
