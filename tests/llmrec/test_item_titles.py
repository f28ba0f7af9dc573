"""load_item_titles: ml-100k's titles from recbole's `.item` file, a user's CSV, and precise errors."""

from __future__ import annotations

import pytest

from paperzoo.data.interactions import load_interactions, load_item_titles, read_atomic, recbole_dataset_folder


def test_ml100k_titles_cover_every_item_with_its_year():
    titles = load_item_titles("ml-100k")
    raw = read_atomic(recbole_dataset_folder("ml-100k") / "ml-100k.item")
    assert len(titles) == len(raw) == 1682
    row = raw.iloc[99]
    assert titles[row["item_id"]] == f"{row['movie_title']} ({row['release_year']})"
    assert set(load_interactions("ml-100k")["item"]) <= set(titles)  # keys as load_interactions gives them


def test_a_csv_with_named_columns_and_its_errors(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("id,name,year\n7,Heat,1995\n8,Fargo,\n")
    assert load_item_titles(path, item="id", title="name") == {"7": "Heat", "8": "Fargo"}
    assert load_item_titles(path, item="id", title="name", year="year") == {"7": "Heat (1995)", "8": "Fargo"}
    with pytest.raises(ValueError, match="no column 'title' for the title"):
        load_item_titles(path, item="id")
    path.write_text("item,title\n7,Heat\n8, \n")
    with pytest.raises(ValueError, match="item '8' \\(row 1\\) has an empty title"):
        load_item_titles(path)
    path.write_text("item,title\n7,Heat\n7,Fargo\n")
    with pytest.raises(ValueError, match="item '7' has two titles, 'Heat' and 'Fargo'"):
        load_item_titles(path)
    path.write_text("item,title\n7,Heat\n7,Heat\n")
    assert load_item_titles(path) == {"7": "Heat"}  # a repeated row is no conflict
    with pytest.raises(ValueError, match="neither a file nor a recbole example dataset name"):
        load_item_titles(tmp_path / "missing.csv")
