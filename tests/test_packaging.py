"""The built wheel ships the configs, so the zoo works from an installed package."""
import os
import subprocess
import sys
import zipfile

from _requires import detectron2_or_skip

detectron2_or_skip()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_ships_configs_and_the_zoo_finds_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"), REPO],
        check=True, env=env, cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "w").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    assert "alignment_det/model_zoo/configs/quick_schedules/fcos_instant_test.py" in names
    assert "alignment_det/model_zoo/configs/common/models/retinanet.py" in names
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
        check=True, env=env, cwd=tmp_path,
    )
    code = (
        "from alignment_det.model_zoo import get_config_file, get_config;"
        "print(get_config_file('fcos_R50.py')); print(get_config('quick_schedules/fcos_instant_test.py').train.max_iter)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(tmp_path / "site")),
    ).stdout.split()
    assert out[0] == str(tmp_path / "site" / "alignment_det" / "model_zoo" / "configs" / "fcos_R50.py")
    assert int(out[1]) > 0
