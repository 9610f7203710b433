"""fastnn.data's tables (issue 16): read_csv, read_npz, Table, TableEncoder without pandas."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.data import Table, TableEncoder, read_csv, read_npz


@pytest.mark.parametrize("text, match", [
    ("a,a,b\n1,2,3\n", r"names 'a' more than once"),
    ("a,,b\n1,2,3\n", r"column 2 of the header has no name"),
    ("a,b\n", r"needs a header row and at least one data row"),
    ("", r"needs a header row and at least one data row"),
])
def test_read_csv_refuses_bad_headers(tmp_path, text, match):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_csv(path)


def test_read_csv_strips_cells_and_skips_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(" a , b\n\n 1 ,x y \n")
    t = read_csv(path)
    assert t.names == ["a", "b"] and t.columns["b"].tolist() == ["x y"] and t.n_rows == 1


def test_read_npz_refuses_object_arrays(tmp_path):
    np.savez(tmp_path / "o.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="object arrays, which fastnn never unpickles"):
        read_npz(tmp_path / "o.npz")


class FakeFrame:
    """What TableEncoder needs of a pandas DataFrame: .columns and [name]."""

    def __init__(self, cols):
        self._cols = cols
        self.columns = list(cols)

    def __getitem__(self, name):
        return self._cols[name]


def test_encoder_takes_dataframes_dicts_and_tables_alike():
    cols = {"n": [1.0, np.nan, 3.0], "c": ["u", "v", None], "t": [0, 1, 0]}
    enc = TableEncoder("t").fit(cols)
    a = enc.transform(FakeFrame(cols))
    b = enc.transform(Table(list(cols), {k: np.asarray(v, dtype=object) for k, v in cols.items()}))
    np.testing.assert_array_equal(a, [[1, 1, 0], [2, 0, 1], [3, 0, 0]])
    np.testing.assert_array_equal(a, b)
    assert enc.feature_names_ == ["n", "c=u", "c=v"] and enc.input_names_ == ["n", "c"]
    assert TableEncoder.from_dict(enc.to_dict()).transform(cols).tolist() == a.tolist()


def test_encoder_errors_name_what_is_wrong():
    enc = TableEncoder().fit({"n": ["1", "2"]})
    with pytest.raises(ValueError, match=r"row 2, column 'n': 'two' is not a number"):
        enc.transform({"n": ["1", "two"]})
    with pytest.raises(ValueError, match=r"column 'e' has no value in the training rows"):
        TableEncoder().fit({"n": ["1"], "e": [""]})
    with pytest.raises(ValueError, match="not a TableEncoder description"):
        TableEncoder.from_dict({"columns": [{"name": "x", "kind": "magic"}]})
    with pytest.raises(RuntimeError, match="not fitted yet"):
        TableEncoder().transform({"n": [1]})
    with pytest.raises(TypeError, match="a dict of columns"):
        TableEncoder().fit([[1, 2]])


def test_categories_from_all_rows_fills_from_training_rows():
    train = {"c": ["a", "a"], "n": ["1", "3"]}
    everything = {"c": ["a", "a", "b"], "n": ["1", "3", "100"]}
    enc = TableEncoder().fit(train, categories_from=everything)
    assert enc.columns_[0]["categories"] == ["a", "b"] and enc.columns_[1]["fill"] == 2.0
    assert fnn.data.MISSING >= {"", "NA", "?"}


def test_a_numeric_column_with_a_stray_text_cell_is_refused_naming_it():
    values = [str(0.5 * i) for i in range(30)]
    values[19] = "1.7o"  # a typo: one-hot encoding it would make 30 categories new data falls outside of
    with pytest.raises(ValueError, match=r"column 'malic_acid' holds numbers but for 1 of its 30 cells "
                                         r"\(row 20: '1\.7o'\); correct them, or leave them empty"):
        TableEncoder(target="y").fit({"malic_acid": values, "y": [0] * 30})


def test_decimal_commas_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"column 'ash' writes numbers with decimal commas \(row 1: '2,43'\); "
                                         r"write them with decimal points \('2\.43'\)"):
        TableEncoder(target="y").fit({"ash": ["2,43", "2,14", "3"], "y": [0, 1, 0]})


def test_a_text_column_with_some_numbers_stays_categorical():
    enc = TableEncoder(target="y").fit({"size": ["S", "M", "L", "XL", "42"], "y": [0, 1, 0, 1, 0]})
    assert enc.feature_names_ == ["size=42", "size=L", "size=M", "size=S", "size=XL"]
