"""Model zoo: config lookup, the empty weight table, and the alignment_det:// download path
for real against an HTTP server on 127.0.0.1 (cached, sha-checked, corrupt file rejected)."""
import hashlib
import http.server
import os
import threading

import pytest
from _requires import detectron2_or_skip

detectron2_or_skip()

import torch  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402

from alignment_det import model_zoo  # noqa: E402
from alignment_det.checkpoint import catalog  # noqa: E402


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits = []

    def do_GET(self):
        _CountingHandler.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1 (an ephemeral port); cache downloads under tmp_path."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: _CountingHandler(*a, directory=str(www), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(model_zoo.ENV_VAR, f"http://127.0.0.1:{server.server_address[1]}/zoo")
    monkeypatch.setattr(catalog, "CHECKPOINTS", {})
    _CountingHandler.hits = []
    yield www
    server.shutdown()
    server.server_close()


def _write_checkpoint(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.arange(4.0)}}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_is_cached_and_sha_checked(http_root):
    sha = _write_checkpoint(http_root / "zoo" / "demo" / "model_final.pth")
    model_zoo.register_checkpoint("demo.py", "demo/model_final.pth", sha)
    url = model_zoo.get_checkpoint_url("demo.py")
    assert url == "alignment_det://demo/model_final.pth"
    local = PathManager.get_local_path(url)
    assert torch.load(local)["model"]["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert PathManager.get_local_path(url) == local
    assert len(_CountingHandler.hits) == 1, "second access should come from the cache"


def test_corrupt_download_is_rejected_and_dropped_from_the_cache(http_root):
    _write_checkpoint(http_root / "zoo" / "demo" / "model_final.pth")
    model_zoo.register_checkpoint("demo.py", "demo/model_final.pth", "0" * 64)
    with pytest.raises(model_zoo.ChecksumError, match="expected 0000") as e:
        PathManager.get_local_path("alignment_det://demo/model_final.pth")
    assert "cached copy was deleted" in str(e.value)
    cached = [os.path.join(r, f) for r, _, fs in os.walk(os.environ["FVCORE_CACHE"]) for f in fs if f.endswith(".pth")]
    assert cached == []


def test_local_folder_mirror(tmp_path, monkeypatch):
    sha = _write_checkpoint(tmp_path / "mirror" / "demo" / "model_final.pth")
    monkeypatch.setenv(model_zoo.ENV_VAR, str(tmp_path / "mirror"))
    monkeypatch.setattr(catalog, "CHECKPOINTS", {})
    model_zoo.register_checkpoint("demo.py", "demo/model_final.pth", sha)
    assert PathManager.get_local_path("alignment_det://demo/model_final.pth") == str(tmp_path / "mirror" / "demo" / "model_final.pth")


def test_prefix_without_env_var_says_what_to_set(monkeypatch):
    monkeypatch.delenv(model_zoo.ENV_VAR, raising=False)
    with pytest.raises(RuntimeError, match=model_zoo.ENV_VAR):
        PathManager.get_local_path("alignment_det://x/model_final.pth")


def test_no_weights_are_listed_until_published():
    # The table ships empty: listing a URL for weights that do not exist would be a lie.
    assert catalog.CHECKPOINTS == {}
    with pytest.raises(RuntimeError, match="No trained weights are published"):
        model_zoo.get_checkpoint_url("retinanet_R50.py")


def test_register_checkpoint_validates_sha():
    with pytest.raises(ValueError, match="64 hex"):
        model_zoo.register_checkpoint("x.py", "x.pth", "abc")


def test_get_config_and_get():
    cfg = model_zoo.get_config("quick_schedules/fcos_instant_test.py")
    assert cfg.train.max_iter > 0
    model = model_zoo.get("quick_schedules/fcos_instant_test.py", device="cpu")
    assert type(model).__name__ == "FCOS"
    with pytest.raises(RuntimeError, match="not in the model zoo"):
        model_zoo.get_config_file("nope.py")


def test_train_net_resolves_the_prefix_in_init_checkpoint(tmp_path, monkeypatch):
    """``train.init_checkpoint=alignment_det://...`` through train_net.py: the prefix is registered
    by what the CLI imports (alignment_det.checkpoint), not by importing the model zoo."""
    from _cli import instant_config, train_net

    config = "quick_schedules/fcos_instant_test.py"
    model = model_zoo.get(config, device="cpu")
    (tmp_path / "mirror" / "fcos").mkdir(parents=True)
    torch.save({"model": model.state_dict()}, tmp_path / "mirror" / "fcos" / "model_final.pth")
    monkeypatch.setenv(model_zoo.ENV_VAR, str(tmp_path / "mirror"))
    proc = train_net(
        "--config-file", instant_config("fcos_instant_test.py"), "--eval-only",
        "train.init_checkpoint=alignment_det://fcos/model_final.pth", f"train.output_dir={tmp_path / 'out'}",
    )
    assert "alignment_det://fcos/model_final.pth" in proc.stdout + proc.stderr
