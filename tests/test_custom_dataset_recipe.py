"""README's 'Training on your own dataset', run as written on a tiny VOC folder (issue 19, item 4),
and ``train_net.py --register`` reaching every process of ``--num-gpus 2``."""
import ast
import os
import re
import subprocess
import sys

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

from _cli import REPO, instant_config, subprocess_env, train_net  # noqa: E402

from alignment_det.data import make_synthetic_voc  # noqa: E402
from alignment_det.utils.metrics_file import read_metric_rows  # noqa: E402

SECTION = "## Training on your own dataset"


def readme_blocks():
    """{language: [code blocks]} of README's section on your own dataset, in order."""
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    blocks = {}
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(lang, []).append(code)
    return blocks


def snippet_classes(snippet: str):
    """The list assigned to ``CLASSES`` in the registration snippet."""
    (value,) = [n.value for n in ast.parse(snippet).body if isinstance(n, ast.Assign) and n.targets[0].id == "CLASSES"]
    return ast.literal_eval(value)


def one_line(command: str) -> str:
    return " ".join(command.replace("\\\n", " ").split())


def test_the_readme_recipe_trains_and_evaluates_on_a_voc_folder_as_written(tmp_path):
    blocks = readme_blocks()
    (snippet,) = blocks["python"]
    train_command, smoke_command = blocks["bash"]
    # The one-minute command is the recipe's command with the tiny model and a few iterations.
    assert one_line(train_command) in one_line(smoke_command)
    # The user's folder: my_datasets.py as printed, a VOC folder where it points, this checkout's
    # train_net.py and configs/ (the commands run from a checkout).
    (tmp_path / "my_datasets.py").write_text(snippet)
    make_synthetic_voc(str(tmp_path / "datasets" / "MyVOC"), {"train": 6, "val": 3}, class_names=snippet_classes(snippet))
    for name in ("train_net.py", "configs"):
        (tmp_path / name).symlink_to(os.path.join(REPO, name))
    env = subprocess_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # `python` is this one
    proc = subprocess.run(["bash", "-c", smoke_command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = tmp_path / "output" / "custom_mal_instant_test"
    assert (out / "model_final.pth").is_file()
    metrics = read_metric_rows(str(out))
    assert max(m["iteration"] for m in metrics if "total_loss" in m) == 4  # train.max_iter=5
    assert any("bbox/AP" in m for m in metrics)  # the final evaluation, on the VOC val split


def test_two_processes_train_on_cpu_with_a_registered_dataset(two_process_run):
    """--num-gpus 2 on CPU (gloo), with a dataset only the --register file knows: it must reach
    every spawned process (both build the train loader; the val split is evaluated)."""
    assert "World size: 2" in two_process_run.log
    out = two_process_run.output
    assert (out / "model_final.pth").is_file() and (out / "log.txt.rank1").is_file()
    assert any("bbox/AP" in m for m in read_metric_rows(str(out)))


def test_a_missing_register_file_is_named_before_any_process_starts(tmp_path, monkeypatch):
    monkeypatch.setattr("alignment_det.engine.cli.launch", lambda *a, **k: pytest.fail("launched"))
    proc = train_net("--register", tmp_path / "nope.py", "--config-file", instant_config("fcos_instant_test.py"), check=False)
    assert proc.returncode == 1
    assert f"FileNotFoundError: --register {tmp_path / 'nope.py'}: no such file" in proc.stderr
