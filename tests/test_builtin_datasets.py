"""The built-in benchmark sets: cards and chess, located by $ALIGNMENT_DET_<NAME>; a missing folder
is an error that names the variable."""
import os

import pytest

from _requires import detectron2_or_skip

detectron2_or_skip()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from alignment_det.data import builtin, check_datasets  # noqa: E402


@pytest.mark.parametrize("name", ["chess", "cards"])
def test_the_folder_comes_from_the_variable(monkeypatch, tmp_path, name):
    monkeypatch.setenv(f"ALIGNMENT_DET_{name.upper()}", str(tmp_path / "mine"))
    assert builtin.benchmark_root(name) == str(tmp_path / "mine")
    monkeypatch.delenv(f"ALIGNMENT_DET_{name.upper()}")
    # else Detectron2's dataset root, as for COCO: $DETECTRON2_DATASETS, default ./datasets
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    assert builtin.benchmark_root(name) == str(tmp_path / "d2" / name)
    monkeypatch.delenv("DETECTRON2_DATASETS")
    monkeypatch.chdir(tmp_path)
    assert builtin.benchmark_root(name) == str(tmp_path / "datasets" / name)


def test_a_missing_set_names_its_variable(tmp_path):
    split_name = "chess_missing_probe_train"
    builtin._register_missing(split_name, "chess", str(tmp_path / "nowhere"))
    for call in (lambda: check_datasets(split_name), lambda: DatasetCatalog.get(split_name)):
        with pytest.raises(FileNotFoundError, match="ALIGNMENT_DET_CHESS") as e:
            call()
        assert str(tmp_path / "nowhere") in str(e.value)


def test_both_sets_are_registered_and_chess_is_the_dense_one():
    for name in ("cards_train", "cards_test", "chess_train", "chess_test"):
        assert name in DatasetCatalog.list()
    try:
        check_datasets("chess_train")
    except FileNotFoundError as e:  # a checkout without the benchmark data beside it
        pytest.skip(str(e))
    train, test = DatasetCatalog.get("chess_train"), DatasetCatalog.get("chess_test")
    assert (len(train), len(test)) == (231, 58) and len(MetadataCatalog.get("chess_train").thing_classes) == 12
    assert sum(len(d["annotations"]) for d in train) / len(train) > 5  # dense: ~10 boxes per image
