"""RRLProcessor: schema fitted on training rows only, documented missing/unseen handling, precise errors, JSON."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from transformers import AutoFeatureExtractor

import paperzoo  # noqa: F401
from paperzoo import RRLConfig, RRLProcessor


def table():
    return pd.DataFrame({
        "color": ["red", "blue", "red", None, "green"],
        "age": [30.0, 50.0, math.nan, 40.0, 60.0],
        "size": [1, 2, 3, 4, 5],
    })


def test_schema_from_training_rows_only():
    wine = load_wine(as_frame=True).data
    train, test = wine.iloc[:100], wine.iloc[100:]
    processor = RRLProcessor().fit(train)
    assert processor.discrete_columns == [] and processor.continuous_columns == list(wine.columns)
    np.testing.assert_allclose(processor.means, train.mean().values)
    np.testing.assert_allclose(processor.stds, train.std(ddof=0).values)
    encoded = processor(test)["input_features"]
    np.testing.assert_allclose(encoded, ((test - train.mean()) / train.std(ddof=0)).values, rtol=1e-5, atol=1e-5)


def test_one_hot_missing_and_unseen_values():
    processor = RRLProcessor().fit(table())
    assert processor.discrete_columns == ["color"] and processor.categories["color"] == ["blue", "green", "red"]
    rows = pd.DataFrame({"color": ["red", "purple", None], "age": [math.nan, 40.0, 45.0], "size": [1, 2, 3]})
    x = processor(rows)["input_features"]
    np.testing.assert_array_equal(x[:, :3], [[0, 0, 1], [0, 0, 0], [0, 0, 0]])  # unseen / missing: all zeros
    mean_age = np.mean([30.0, 50.0, 40.0, 60.0])
    assert processor.means[0] == pytest.approx(mean_age) and x[0, 3] == 0.0  # missing continuous → mean → z = 0


def test_declared_discrete_columns_and_inputs_of_every_shape():
    processor = RRLProcessor().fit(table(), discrete=["color", "size"])
    assert processor.discrete_columns == ["color", "size"] and processor.continuous_columns == ["age"]
    frame = processor(table().iloc[:2])["input_features"]
    np.testing.assert_array_equal(processor(table().iloc[0].to_dict())["input_features"], frame[:1])
    np.testing.assert_array_equal(processor(table().iloc[:2].to_dict("records"))["input_features"], frame)
    np.testing.assert_array_equal(processor(table().iloc[:2].values)["input_features"], frame)


def test_errors_name_the_column_or_value():
    processor = RRLProcessor().fit(table())
    with pytest.raises(ValueError, match=r"missing \['age'\]"):
        processor(table().drop(columns=["age"]))
    with pytest.raises(ValueError, match=r"unexpected \['weight'\]"):
        processor(table().assign(weight=1.0))
    with pytest.raises(ValueError, match=r"column 'age' is continuous but row 0 holds 'old', which is not a number"):
        processor(table().assign(age="old"))
    with pytest.raises(ValueError, match="empty input"):
        processor(table().iloc[:0])
    with pytest.raises(ValueError, match="empty table"):
        RRLProcessor().fit(table().iloc[:0])
    with pytest.raises(ValueError, match=r"discrete column\(s\) \['shade'\]"):
        RRLProcessor().fit(table(), discrete=["shade"])
    with pytest.raises(ValueError, match="not fitted"):
        RRLProcessor()(table())


def test_json_round_trip_and_auto_feature_extractor(tmp_path):
    processor = RRLProcessor().fit(table())
    RRLConfig(num_discrete_features=processor.num_discrete_features,
              num_continuous_features=processor.num_continuous_features).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, RRLProcessor)
    np.testing.assert_array_equal(loaded(table())["input_features"], processor(table())["input_features"])
    assert loaded.schema() == processor.schema()


def test_pandas_na_and_row_key_order():
    frame = pd.DataFrame({"age": pd.array([30, None, 50], dtype="Int64"), "color": ["red", pd.NA, "blue"]})
    processor = RRLProcessor().fit(frame)
    x = processor(frame)["input_features"]
    assert processor.continuous_columns == ["age"] and x[1, -1] == 0.0  # <NA> is missing: mean, z = 0
    np.testing.assert_array_equal(x[1, :2], [0, 0])
    rows = [{"age": 30, "color": "red"}, {"color": "blue", "age": 50}]  # same keys, any order
    np.testing.assert_array_equal(processor(rows)["input_features"], x[[0, 2]])
    with pytest.raises(ValueError, match="row 1 has columns"):
        processor([{"age": 30, "color": "red"}, {"age": 50}])


def wine_with(row: int, value) -> pd.DataFrame:
    """scikit-learn's wine (13 numeric columns) with one cell of `alcohol` replaced by `value`."""
    wine = load_wine(as_frame=True).data.astype(object)
    wine.loc[row, "alcohol"] = value
    return wine


@pytest.mark.parametrize("value", ["abc", "?", "13,2", "inf"])
def test_a_stray_bad_value_does_not_make_a_numeric_column_discrete(value):
    with pytest.raises(ValueError, match=rf"column 'alcohol' is continuous but row 17 holds {re.escape(repr(value))}"):
        RRLProcessor().fit(wine_with(17, value))
    frame = wine_with(17, value).rename(index=lambda i: f"w{i}")  # rows are named by the DataFrame's index ...
    with pytest.raises(ValueError, match=r"but row w17 holds"):
        RRLProcessor().fit(frame)
    frame.index.name = "sample"  # ... after its name when it has one
    with pytest.raises(ValueError, match=r"but sample w17 holds"):
        RRLProcessor().fit(frame)
    with pytest.raises(ValueError, match=r"but row 17 holds"):  # other inputs: by position
        RRLProcessor().fit(frame.to_numpy())


def test_bad_values_missing_treats_them_as_missing_values(tmp_path):
    clean = load_wine(as_frame=True).data
    dirty = wine_with(17, "?")
    processor = RRLProcessor(bad_values="missing").fit(dirty)
    assert processor.discrete_columns == [] and processor.continuous_columns == list(clean.columns)
    assert processor.means[0] == pytest.approx(clean["alcohol"].drop(index=17).mean())  # as if the cell were empty
    x = processor(dirty)["input_features"]
    assert x[17, 0] == 0.0  # missing continuous → training mean → z = 0
    np.testing.assert_allclose(x[:, 1:], processor(clean)["input_features"][:, 1:])
    processor.save_pretrained(tmp_path)  # the policy is part of the saved processor: encoding later applies it too
    loaded = RRLProcessor.from_pretrained(tmp_path)
    assert loaded.bad_values == "missing" and loaded(dirty.iloc[17:18])["input_features"][0, 0] == 0.0
    strict = RRLProcessor().fit(clean)
    with pytest.raises(ValueError, match=r"column 'alcohol' is continuous but row 17 holds '\?'"):
        strict(dirty)


def test_which_columns_are_discrete():
    # a column is discrete when named, or when it has values and none is a number; one number makes it continuous
    frame = pd.DataFrame({"text": ["a", "?", None], "codes": ["1", "2", "x"], "flags": [True, False, True],
                          "empty": [None, None, None]})
    processor = RRLProcessor(bad_values="missing").fit(frame)
    assert processor.discrete_columns == ["text", "flags"] and processor.continuous_columns == ["codes", "empty"]
    with pytest.raises(ValueError, match=r"column 'text' is continuous but all its values are non-numeric \(e.g. 'a'\)"):
        RRLProcessor(bad_values="missing").fit(frame, discrete=["flags"])
    with pytest.raises(ValueError, match=r"bad_values='drop' is not one of \('error', 'missing'\)"):
        RRLProcessor(bad_values="drop")
