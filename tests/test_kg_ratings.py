"""The KCF-PLM dataset builder (paperzoo.data.kg_ratings): ml-100k from the recbole wheel (counts, split, graph,
documents, aspects), no leakage of valid/test ratings into the user documents or the graph, a user's files, and a
ValueError naming the file, column and value for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from paperzoo.data.interactions import read_atomic, recbole_dataset_folder
from paperzoo.data.kg_ratings import ASPECT_TYPES, KGRatingData, build_kg_rating_data


@pytest.fixture(scope="module")
def ml100k() -> KGRatingData:
    return build_kg_rating_data("ml-100k", seed=0)


def test_ml100k_counts_split_and_determinism(ml100k):
    data = ml100k
    assert len(data.users) == len(data.user_documents) == 943
    assert len(data.items) == len(data.item_documents) == len(data.item_aspects) == 1682
    assert len(data.ratings) == 100_000 and list(data.ratings.columns) == ["user", "item", "rating", "timestamp",
                                                                         "split"]
    sizes = {name: len(data.split(name)) for name in ("train", "valid", "test")}
    assert sizes == {"train": 80_000, "valid": 10_000, "test": 10_000}
    assert data.ratings["rating"].between(1, 5).all() and data.rating_range == (1.0, 5.0)
    again, other = build_kg_rating_data(seed=0), build_kg_rating_data(seed=1)
    assert (again.ratings["split"] == data.ratings["split"]).all()
    assert np.array_equal(again.edges, data.edges) and again.user_documents == data.user_documents
    assert (other.ratings["split"] != data.ratings["split"]).mean() > 0.2  # a different random split
    with pytest.raises(ValueError, match="split name='dev'"):
        data.split("dev")


def test_ml100k_graph(ml100k):
    data = ml100k
    edges, weights, entities = data.edges, data.edge_weights, data.entities
    assert edges.dtype == np.int64 and edges.ndim == 2 and edges.shape[1] == 3 and weights.shape == (len(edges),)
    assert weights.dtype == np.float32 and (weights >= 0).all()
    assert edges[:, :2].min() >= 0 and edges[:, :2].max() < len(entities)
    assert edges[:, 2].min() >= 0 and edges[:, 2].max() < len(data.relations)
    assert entities[:943] == [f"user:{u}" for u in data.users] and data.users[:3] == ["1", "2", "3"]
    assert entities[0] == "user:1" and entities[943] == "item:1" and data.entity_id("item:1") == 943
    assert len(set(entities)) == len(entities) and data.entity_index["genre:Comedy"] == data.entity_id("genre:Comedy")
    # every relation has its inverse: the second half of the edges is the first half reversed
    k, half = len(data.relations) // 2, len(edges) // 2
    assert [data.relations[r + k] for r in range(k)] == [name + "^-1" for name in data.relations[:k]]
    assert np.array_equal(edges[half:], np.stack([edges[:half, 1], edges[:half, 0], edges[:half, 2] + k], 1))
    assert np.array_equal(weights[half:], weights[:half]) and data.inverse_relation(3) == 3 + k
    assert set(np.unique(edges[:, 2])) == set(range(2 * k))
    assert len(np.unique(edges, axis=0)) == len(edges)  # no duplicate edges
    # "rated" edges: exactly the train ratings, weighted rating / 5
    rated = edges[:half][edges[:half, 2] == data.relations.index("rated")]
    train, held_out = data.split("train"), data.ratings[data.ratings["split"] != "train"]
    pair_list = [(entities[s][5:], entities[d][5:]) for s, d in rated[:, :2]]
    pairs = set(pair_list)
    assert pairs == set(zip(train["user"], train["item"])) and len(rated) == 80_000
    assert not pairs & set(zip(held_out["user"], held_out["item"]))
    weight = dict(zip(zip(train["user"], train["item"]), train["rating"] / 5))
    rated_weights = weights[:half][edges[:half, 2] == data.relations.index("rated")]
    assert np.allclose(rated_weights, [weight[p] for p in pair_list])
    # a linked item is its Freebase node: Toy Story (item 1) is m.0dyb1
    links = read_atomic(recbole_dataset_folder("ml-100k") / "ml-100k.link")
    assert not set(links["entity_id"]) & set(entities)
    directed_by = data.relations.index("film.film.directed_by")
    toy_story = data.entity_id("item:1")
    assert ((edges[:, 0] == toy_story) & (edges[:, 2] == directed_by)).sum() == 1
    assert data.relation_aliases["film.director.film"] == "film.film.directed_by^-1"
    assert "film.director.film" not in data.relations  # folded into film.film.directed_by^-1, not kept twice


def test_ml100k_documents_and_aspects(ml100k):
    data = ml100k
    assert all(doc.strip() for doc in data.item_documents.values())
    toy_story = data.item_documents["1"]
    assert toy_story.startswith("Toy Story (1995). Genres: Animation, Children's and Comedy. ")
    assert "1 director" in toy_story and "actors" in toy_story and "m." not in toy_story
    # a user's document: the train ratings, most recent first
    train = data.split("train")
    mine = train[train["user"] == "196"].sort_values("timestamp", ascending=False, kind="stable")
    document = data.user_documents["196"]
    assert document.count("/5.") == len(mine)
    first = mine.iloc[0]
    assert document.startswith(f"{data.item_documents[first['item']].split('.')[0]}: {int(first['rating'])}/5.")
    capped = build_kg_rating_data(seed=0, max_user_document_items=3).user_documents["196"]
    assert capped.count("/5.") == 3 and document.startswith(capped[:-1])
    # aspects: valid types, never items or users, ordered by type then degree
    degree = np.bincount(data.edges[:, 0], minlength=len(data.entities))
    for item, aspects in data.item_aspects.items():
        types = [t for _, t in aspects]
        assert types == sorted(types) and all(0 <= t < len(ASPECT_TYPES) for t in types)
        keys = [key for key, _ in aspects]
        assert len(set(keys)) == len(keys) and not any(key.startswith(("item:", "user:")) for key in keys)
        for t in set(types):
            d = [degree[data.entity_id(key)] for key, tt in aspects if tt == t]
            assert d == sorted(d, reverse=True), (item, t)
    counts = [len(a) for a in data.item_aspects.values()]
    assert min(counts) >= 1 and np.median(counts) > 10
    assert ("genre:Comedy", 0) in data.item_aspects["1"] and any(t == 1 for _, t in data.item_aspects["1"])


def _write_user_files(folder, ratings=None, items=None, kg=None, links=None):
    files = {
        "ratings.csv": ratings or ("user,item,rating,timestamp\n"
                                   "ann,a,5,10\nann,b,3,20\nann,c,4,30\n"
                                   "bob,a,2,15\nbob,c,1,25\ncy,b,4.5,5\n"),
        "items.csv": items or ("item,title,year,genres\n"
                               "a,Alpha,2001,Drama|Science Fiction\nb,Beta,,Comedy\nc,Gamma,unknown,\n"),
        "kg.csv": kg or ("head,relation,tail\n"
                         "m.a,film.film.directed_by,m.dir\nm.dir,film.director.film,m.a\n"
                         "m.b,film.film.directed_by,m.dir\nm.dir,film.director.film,m.b\n"
                         "m.a,film.film.actor,m.x\nm.b,film.film.actor,m.x\nm.a,film.film.actor,m.y\n"
                         "m.a,film.film.actor,m.y\nm.a,film.film.written_by,m.dir\nm.a,film.film.language,m.en\n"
                         "m.a,film.film.genre,m.drama\nm.x,award.person.award,m.oscar\n"),
        "links.csv": links or "item,entity\na,m.a\nb,m.b\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return {key: folder / f"{key}.csv" for key in ("ratings", "items", "kg", "links")}


def test_user_files_round_trip(tmp_path):
    paths = _write_user_files(tmp_path)
    data = build_kg_rating_data(**paths, split=(1.0, 0.0, 0.0))
    assert data.users == ["ann", "bob", "cy"] and data.items == ["a", "b", "c"]
    assert data.entities == ["user:ann", "user:bob", "user:cy", "item:a", "item:b", "item:c", "m.dir", "m.drama",
                             "m.en", "m.oscar", "m.x", "m.y", "genre:Comedy", "genre:Drama",
                             "genre:Science Fiction"]
    assert data.relation_aliases == {"film.director.film": "film.film.directed_by^-1"}
    assert data.relations[:2] == ["rated", "has_genre"] and "film.director.film" not in data.relations
    assert data.item_documents == {
        "a": "Alpha (2001). Genres: Drama and Science Fiction. Its knowledge-graph entry lists 1 director, "
             "1 writer, 2 actors and 1 language.",
        "b": "Beta. Genre: Comedy. Its knowledge-graph entry lists 1 director and 1 actor.",
        "c": "Gamma."}
    assert data.user_documents == {"ann": "Gamma: 4/5. Beta: 3/5. Alpha (2001): 5/5.",
                                   "bob": "Gamma: 1/5. Alpha (2001): 2/5.", "cy": "Beta: 4.5/5."}
    # m.dir directs a and b (degree 3 with the writing credit): director first; m.x acts in two films, m.y in one
    assert data.item_aspects == {
        "a": [("genre:Drama", 0), ("genre:Science Fiction", 0), ("m.drama", 0), ("m.dir", 1), ("m.x", 2),
              ("m.y", 2)],
        "b": [("genre:Comedy", 0), ("m.dir", 1), ("m.x", 2)], "c": []}

    # 6 rated + 3 has_genre + 9 KG edges (the film.director.film rows fold into directed_by, m.y's repeat drops)
    assert len(data.edges) == 2 * (6 + 3 + 9)
    rated = data.edges[data.edges[:, 2] == 0]
    rated_weights = dict(zip(map(tuple, rated[:, :2].tolist()), data.edge_weights[data.edges[:, 2] == 0]))
    assert rated_weights[(2, 4)] == pytest.approx(4.5 / 5)  # cy -> b, 4.5 stars
    # recbole atomic files in a folder, and DataFrames, give the same data
    folder = tmp_path / "mini"
    folder.mkdir()
    ratings = pd.read_csv(paths["ratings"], dtype=str)
    ratings.rename(columns={"user": "user_id:token", "item": "item_id:token", "rating": "rating:float",
                            "timestamp": "timestamp:float"}).to_csv(folder / "mini.inter", sep="\t", index=False)
    pd.DataFrame({"item_id:token": ["a", "b", "c"], "movie_title:token_seq": ["Alpha", "Beta", "Gamma"],
                  "release_year:token": ["2001", "", "unknown"],
                  "class:token_seq": ["Drama|Science Fiction", "Comedy", ""]}).to_csv(folder / "mini.item", sep="\t",
                                                                                       index=False)
    for name, columns in (("kg", ["head_id:token", "relation_id:token", "tail_id:token"]),
                          ("links", ["item_id:token", "entity_id:token"])):
        frame = pd.read_csv(paths[name], dtype=str)
        frame.columns = columns
        frame.to_csv(folder / f"mini.{'link' if name == 'links' else 'kg'}", sep="\t", index=False)
    atomic = build_kg_rating_data(folder, split=(1.0, 0.0, 0.0))
    frames = build_kg_rating_data(ratings=ratings, items=pd.read_csv(paths["items"], dtype=str), kg=paths["kg"],
                                  links=paths["links"], split=(1.0, 0.0, 0.0))
    for other in (atomic, frames):
        assert other.entities == data.entities and np.array_equal(other.edges, data.edges)
        assert other.item_documents == data.item_documents and other.item_aspects == data.item_aspects
    # without a KG: users, items and genres only
    plain = build_kg_rating_data(ratings=paths["ratings"], items=paths["items"])
    assert plain.entities[6:] == ["genre:Comedy", "genre:Drama", "genre:Science Fiction"]
    assert plain.relations == ["rated", "has_genre", "rated^-1", "has_genre^-1"]
    assert plain.item_documents["a"] == "Alpha (2001). Genres: Drama and Science Fiction."


def test_no_leakage_of_held_out_ratings(tmp_path):
    """The same rating in train under one seed and in test under another: only the first puts it in the user's
    document and the graph."""
    rows = "".join(f"u,i{n},{1 + n % 5},{100 + n}\n" for n in range(10))
    items = "".join(f"i{n},Film {n},{1990 + n},Drama\n" for n in range(10))
    paths = _write_user_files(tmp_path, ratings="user,item,rating,timestamp\n" + rows,
                              items="item,title,year,genres\n" + items)
    del paths["kg"], paths["links"]
    built = {seed: build_kg_rating_data(**paths, seed=seed, split=(0.5, 0.2, 0.3)) for seed in range(12)}
    where = {seed: data.ratings.set_index("item").loc["i3", "split"] for seed, data in built.items()}
    in_train = next(s for s, w in where.items() if w == "train")
    in_test = next(s for s, w in where.items() if w == "test")
    for seed, expect in ((in_train, True), (in_test, False)):
        data = built[seed]
        assert ("Film 3 (1993): 4/5." in data.user_documents["u"]) is expect
        rated = data.edges[data.edges[:, 2] == data.relations.index("rated")]
        assert bool((rated[:, 1] == data.entity_id("item:i3")).any()) is expect
        train = data.split("train").sort_values("timestamp", ascending=False)
        assert data.user_documents["u"] == ". ".join(
            f"Film {i[1:]} ({1990 + int(i[1:])}): {int(r)}/5" for i, r in zip(train["item"], train["rating"])) + "."
    all_held_out = build_kg_rating_data(**paths, split=(0.0, 0.5, 0.5))
    assert all_held_out.user_documents == {"u": ""} and (all_held_out.edges[:, 2] != 0).all()


BAD = [  # (file overrides or arguments, message)
    ({"ratings": "user,item,stars,timestamp\nann,a,5,1\n"}, r"ratings file ratings.csv: no column 'rating'"),
    ({"ratings": "user,item,rating,timestamp\nann,a,five,1\n"},
     r"ratings file ratings.csv: row 0: column 'rating' holds 'five', not a number"),
    ({"ratings": "user,item,rating,timestamp\nann,a,5,1\nann,b,6,2\n"},
     r"row 1: column 'rating' holds 6.0, outside rating_range=\(1.0, 5.0\)"),
    ({"ratings": "user,item,rating,timestamp\nann,a,5,1\nann,b,4,x\n"}, r"row 1: column 'timestamp' holds 'x'"),
    ({"ratings": "user,item,rating,timestamp\nann,a,5,1\nbob,a,4,2\nann,a,3,3\n"},
     r"rows 0 and 2 both rate item 'a' by user 'ann': duplicate \(user, item\)"),
    ({"ratings": "user,item,rating,timestamp\n,a,5,1\n"}, r"row 0: column 'user' is empty"),
    ({"ratings": "user,item,rating,timestamp\nann,zz,5,1\n"},
     r"column 'item' holds 'zz', an item missing from the items file items.csv"),
    ({"ratings": "user,item,rating,timestamp\n"}, r"ratings file ratings.csv is empty"),
    ({"items": "item,title\na,Alpha\nb,\nc,Gamma\n"}, r"items file items.csv: row 1: column 'title' is empty"),
    ({"items": "item,title\na,Alpha\nb,Beta\na,Gamma\nc,C\n"}, r"row 2: column 'item' repeats item 'a'"),
    ({"items": "item,name\na,Alpha\n"}, r"items file items.csv: no column 'title'"),
    ({"links": "item,entity\na,m.a\nzz,m.b\n"},
     r"links file links.csv: row 1: column 'item' holds 'zz', an item that is in neither"),
    ({"links": "item,entity\na,m.a\nb,m.nowhere\n"},
     r"links file links.csv: row 1: column 'entity' holds 'm.nowhere', an unknown entity id in the KG file kg.csv"),
    ({"links": "item,entity\na,m.a\nb,m.a\n"}, r"row 1: entity 'm.a' is linked to two items"),
    ({"links": "item,entity\na,m.a\na,m.b\n"}, r"row 1: item 'a' is linked to two entities"),
    ({"kg": "head,relation,tail\nm.a,film.film.actor,m.x\nm.b,film.film.actor,\n"},
     r"kg file kg.csv: row 1: column 'tail' is empty"),
    ({"kg": "head,relation,tail\nm.a,rated,m.b\n"}, r"column 'relation' holds 'rated', a reserved relation name"),
    ({"kg": "head,relation,tail\nm.a,film.film.actor,user:ann\n"}, r"column 'tail' holds 'user:ann', which collides"),
    ({"kg": "head,relation,tail\n"}, r"kg file kg.csv is empty"),
    ({"drop": "links"}, r"links=None while kg is given"),
    ({"split": (0.8, 0.1, 0.2)}, r"split=\(0.8, 0.1, 0.2\) must sum to 1"),
    ({"split": (1.2, -0.1, -0.1)}, r"the valid fraction -0.1 must be a number >= 0"),
    ({"split": (0.5, 0.5)}, r"split=\(0.5, 0.5\) must be three fractions"),
    ({"rating_range": (5, 1)}, r"rating_range=\(5, 1\) must be two numbers 0 <= low < high"),
    ({"max_user_document_items": 0}, r"max_user_document_items=0 must be None or an integer >= 1"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_names_the_field(tmp_path, change, message):
    files = {k: v for k, v in change.items() if k in ("ratings", "items", "kg", "links")}
    paths = _write_user_files(tmp_path, **files)
    arguments = {k: v for k, v in change.items() if k not in files and k != "drop"}
    if "drop" in change:
        del paths[change["drop"]]
    with pytest.raises(ValueError, match=message):
        build_kg_rating_data(**paths, **arguments)


def test_bad_arguments(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    paths = _write_user_files(tmp_path)
    with pytest.raises(ValueError, match="ratings file empty.csv is empty"):
        build_kg_rating_data(ratings=tmp_path / "empty.csv", items=paths["items"])
    with pytest.raises(ValueError, match="items=None: the items file"):
        build_kg_rating_data(ratings=paths["ratings"])
    with pytest.raises(ValueError, match="without ratings="):
        build_kg_rating_data(items=paths["items"])
    with pytest.raises(ValueError, match="source='no-such-dataset.csv' is neither a folder"):
        build_kg_rating_data("no-such-dataset.csv")
    data = build_kg_rating_data(**paths)
    with pytest.raises(ValueError, match="entity key='m.a' is not a node"):
        data.entity_id("m.a")  # linked: it is the node item:a
    assert data.entity_id("item:a") == 3
