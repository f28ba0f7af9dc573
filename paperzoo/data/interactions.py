"""User-item interactions with timestamps, offline: recbole's atomic example files (ml-100k: 943 users, 1,682 movies,
100,000 ratings with timestamps, inside the `recbole` wheel, which is installed with `--no-deps` and never imported:
only its folder is located) or a user's CSV / Parquet file with user, item and timestamp columns; and the items'
titles (what an LLM recommender reads) from the same `.item` file or the user's own table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RECBOLE_INSTALL = 'pip install --no-deps "recbole==1.2.1"'
COLUMNS = ("user", "item", "timestamp")


def recbole_dataset_folder(name: str = "ml-100k") -> Path:
    """The folder of a dataset shipped in the recbole wheel (`dataset_example/<name>`)."""
    spec = importlib.util.find_spec("recbole")
    folder = Path(spec.submodule_search_locations[0]) / "dataset_example" / name if spec else None
    if folder is None or not folder.is_dir():
        raise ImportError(f"recbole's example dataset {name!r} is not installed; install it with: {RECBOLE_INSTALL} "
                          f"(--no-deps: only its data files are read)")
    return folder


def read_atomic(path: str | Path):
    """A recbole atomic file (tab-separated, header `name:type`) as a DataFrame with the bare names."""
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def load_interactions(source: str | Path = "ml-100k", user: str = "user", item: str = "item",
                      timestamp: str = "timestamp"):
    """DataFrame [user, item, timestamp] (keys as strings, timestamps as floats) from a recbole dataset name
    ("ml-100k"), a `.inter` file, or a CSV / Parquet file whose columns `user`, `item`, `timestamp` are named by the
    arguments. ValueError naming the column that is missing or not numeric."""
    path, builtin = _source_path(source, ".inter")
    if builtin:
        user, item, timestamp = "user_id", "item_id", "timestamp"
    import pandas as pd

    frame = _read_table(path, dtype={user: str, item: str})
    if path.suffix == ".inter" and "user_id" in frame.columns and user == "user":
        user, item = "user_id", "item_id"
    for role, name in zip(COLUMNS, (user, item, timestamp)):
        if name not in frame.columns:
            raise ValueError(f"{path.name}: no column {name!r} for the {role} (columns: {list(frame.columns)}); "
                             f"pass {role}=<column name>")
    times = pd.to_numeric(frame[timestamp], errors="coerce")
    if times.isna().any():
        row = int(times.isna().to_numpy().argmax())
        raise ValueError(f"{path.name}: column {timestamp!r} holds {frame[timestamp].iloc[row]!r} in row {row}, "
                         f"not a number")
    return pd.DataFrame({"user": frame[user].astype(str), "item": frame[item].astype(str), "timestamp": times})


def _source_path(source: str | Path, suffix: str) -> tuple[Path, bool]:
    """(the file, whether it is a recbole example dataset's) for a path or a dataset name such as "ml-100k"."""
    path = Path(source)
    builtin = not path.exists() and isinstance(source, str) and "/" not in source and "." not in source
    if builtin:
        path = recbole_dataset_folder(source) / f"{source}{suffix}"
    if not path.is_file():
        raise ValueError(f"source={str(source)!r} is neither a file nor a recbole example dataset name")
    return path, builtin


def _read_table(path: Path, dtype: dict | None = None):
    import pandas as pd

    if path.suffix in (".inter", ".item"):
        return read_atomic(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=dtype, keep_default_na=False)


def load_item_titles(source: str | Path = "ml-100k", item: str = "item", title: str = "title",
                     year: str | None = None) -> dict[str, str]:
    """{item key: title} from a recbole dataset name ("ml-100k": the `.item` file's movie_title with its release year
    in brackets, "Toy Story (1995)", as the LLM recommendation papers show MovieLens titles), a recbole `.item` file,
    or a CSV / Parquet file whose item and title columns are named by `item` and `title` (`year`: an optional column
    appended in brackets). Keys are strings, as `load_interactions` gives them. ValueError naming the missing column,
    or the item whose title is empty or given twice differently."""
    path, builtin = _source_path(source, ".item")
    if builtin:
        item, title, year = "item_id", "movie_title", "release_year"
    frame = _read_table(path, dtype={item: str, title: str, **({year: str} if year else {})})
    for role, name in (("item", item), ("title", title), ("year", year)):
        if name is not None and name not in frame.columns:
            raise ValueError(f"{path.name}: no column {name!r} for the {role} (columns: {list(frame.columns)}); "
                             f"pass {role}=<column name>")
    titles: dict[str, str] = {}
    years = frame[year].astype(str).str.strip() if year else [""] * len(frame)
    for row, (key, name, when) in enumerate(zip(frame[item].astype(str), frame[title].astype(str), years)):
        name = name.strip()
        if not name or name.lower() == "nan":
            raise ValueError(f"{path.name}: item {key!r} (row {row}) has an empty title in column {title!r}")
        name = f"{name} ({when})" if when and when.lower() != "nan" else name
        if titles.setdefault(key, name) != name:
            raise ValueError(f"{path.name}: item {key!r} has two titles, {titles[key]!r} and {name!r} (row {row})")
    return titles


__all__ = ["RECBOLE_INSTALL", "load_interactions", "load_item_titles", "read_atomic", "recbole_dataset_folder"]
