"""`paperzoo export` and `paperzoo push`: what they write, and their errors as one line on stderr with a non-zero exit.

push: against the loopback fake Hub (401 for an unknown token, 404 from an endpoint that is not a Hub), against a
loopback port nobody listens on, without a token and in offline mode. huggingface_hub reads `constants.ENDPOINT` each
time an HfApi is made, so these run in this process with the constant pointed at the endpoint; one run goes through a
fresh `python -m paperzoo.cli` with HF_ENDPOINT set, as a user would.
export: local folders only (never a Hub lookup: the fake Hub sees no request), the Auto class inferred from the folder,
the RRL processor kept.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import paperzoo
from paperzoo.cli import build_parser, main

from .hub.fakehub import FakeHub, repo_root
from .hub.test_export import tiny_retnet
from .pipelines import train

constants = importlib.import_module("huggingface_hub.constants")
export_module = importlib.import_module("paperzoo.hub.export")


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def one_line(stderr: str, command: str) -> str:
    """The error line, checked to be the whole of stderr."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"paperzoo {command}: error: "), stderr
    return stderr[len(f"paperzoo {command}: error: "):-1]


@pytest.fixture(scope="module")
def hub():
    with FakeHub(tokens={"good-token"}) as server:
        yield server


@pytest.fixture
def endpoint(monkeypatch, tmp_path):
    """Point huggingface_hub at `url` (with the token "good-token" unless told otherwise); no stored login."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))  # not ~/.cache
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))

    def use(url: str, token: str | None = "good-token") -> str:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        if token is None:
            monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HF_TOKEN", token)
        return url

    return use


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return paperzoo.hub.export(tiny_retnet(), tmp_path_factory.mktemp("cli-hub") / "tiny-retnet")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DroppingServer:
    """Accepts connections, reads the request line and closes without an answer; records the request lines."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.sock.getsockname()[1]

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.lines.append(conn.makefile("rb").readline().decode("latin-1").strip())

    def close(self):
        self.sock.close()


# ----------------------------------------------------------------------------------------------------------------------
# push


def test_push_to_a_closed_port_is_one_line(exported, endpoint):
    url = endpoint(f"http://127.0.0.1:{closed_port()}")
    rc, out, err = run(["push", str(exported), "testuser/tiny"])
    assert rc == 1 and out == ""
    line = one_line(err, "push")
    assert line.startswith(f"cannot reach the Hub at {url} to create the repo testuser/tiny (ConnectError")
    assert "HF_ENDPOINT" in line


def test_push_does_not_retry_a_dropped_connection(exported, endpoint):
    """huggingface_hub retries some requests on network errors (1+2+4+8+8 s); the first one, create_repo, is not
    retried, so a push to an endpoint that drops connections fails after one attempt."""
    server = DroppingServer()
    try:
        url = endpoint(server.url)
        rc, _, err = run(["push", str(exported), "testuser/tiny"])
    finally:
        server.close()
    assert rc == 1
    assert one_line(err, "push").startswith(f"cannot reach the Hub at {url} to create the repo testuser/tiny")
    assert [line for line in server.lines if "/api/repos/create" in line] == ["POST /api/repos/create HTTP/1.1"]
    assert not [line for line in server.lines if "preupload" in line or "/commit/" in line]


def test_push_without_a_token_asks_for_one(exported, endpoint, hub):
    url = endpoint(hub.endpoint, token=None)
    before = len(hub.requests)
    rc, _, err = run(["push", str(exported), "testuser/tiny"])
    assert rc == 1
    line = one_line(err, "push")
    assert line.startswith(f"no Hugging Face token to push testuser/tiny to {url}: log in with `hf auth login`")
    assert len(hub.requests) == before  # nothing was sent


def test_push_with_a_rejected_token(exported, endpoint, hub):
    url = endpoint(hub.endpoint, token="expired-token")
    rc, _, err = run(["push", str(exported), "testuser/tiny"])
    assert rc == 1
    line = one_line(err, "push")
    assert line.startswith(f"the Hub at {url} did not accept the token (401 Unauthorized) to create the repo "
                           "testuser/tiny")
    assert "hf auth login" in line and "testuser/tiny" not in hub.repos


def test_push_to_an_endpoint_that_is_not_a_hub(exported, endpoint, hub):
    url = endpoint(hub.endpoint + "/not-a-hub")
    rc, _, err = run(["push", str(exported), "testuser/tiny"])
    assert rc == 1
    line = one_line(err, "push")
    assert line.startswith(f"the Hub at {url} answered 404 Not Found to create the repo testuser/tiny")
    assert "HF_ENDPOINT" in line


def test_push_in_offline_mode(exported, endpoint, hub, monkeypatch):
    endpoint(hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    rc, _, err = run(["push", str(exported), "testuser/tiny"])
    assert rc == 1 and "offline mode is on (HF_HUB_OFFLINE)" in one_line(err, "push")
    assert len(hub.requests) == before


def test_push_with_an_invalid_repo_id_is_a_usage_error(exported, endpoint, hub):
    endpoint(hub.endpoint)
    rc, _, err = run(["push", str(exported), "a/b/c"])
    assert rc == 2 and "a/b/c" in one_line(err, "push")


def test_push_with_the_accepted_token_uploads(exported, endpoint, hub):
    endpoint(hub.endpoint)
    rc, out, err = run(["push", str(exported), "testuser/tiny-ok"])
    assert rc == 0 and "error" not in err, err
    head = hub.repos["testuser/tiny-ok"].head[0]
    assert out == f"pushed {exported} -> {hub.endpoint}/testuser/tiny-ok/commit/{head}\n"
    assert set(hub.files("testuser/tiny-ok")) == {p.name for p in exported.iterdir()}


def test_push_command_in_a_fresh_process(exported, tmp_path):
    """As a user runs it: HF_ENDPOINT in the environment, a port nobody listens on; one line, exit 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_TOKEN="good-token", HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=str(repo_root()))
    proc = subprocess.run([sys.executable, "-m", "paperzoo.cli", "push", str(exported), "testuser/tiny"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert one_line(proc.stderr, "push").startswith(f"cannot reach the Hub at {env['HF_ENDPOINT']}")


# ----------------------------------------------------------------------------------------------------------------------
# export: local folders only


@pytest.fixture
def no_hub_requests(endpoint, hub):
    """Any Hub lookup would reach the fake Hub: the test checks that none happened."""
    endpoint(hub.endpoint)
    before = len(hub.requests)
    yield
    assert hub.requests[before:] == []


def test_export_of_a_csv_file_fails_at_once(tmp_path, monkeypatch, no_hub_requests):
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_text("a,b\n1,2\n")
    rc, out, err = run(["export", "data.csv", "out"])
    assert rc == 2 and out == ""
    assert one_line(err, "export") == ("data.csv is a file, not a saved model folder (a folder with config.json and "
                                       "the weights)")
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


@pytest.mark.parametrize("name, hint", [("missing-model", False), ("someone/model", True),
                                        ("models/missing.csv", False), ("../x/y/z", False)])
def test_export_of_a_missing_folder_fails_at_once(tmp_path, monkeypatch, no_hub_requests, name, hint):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["export", name, "out"])
    line = one_line(err, "export")
    assert rc == 2 and line.startswith(f"{name}: no such folder")
    assert ("hf download" in line) == hint
    assert os.listdir(tmp_path) == []


def test_export_of_a_folder_without_config(tmp_path, no_hub_requests):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    rc, _, err = run(["export", str(tmp_path / "weights"), str(tmp_path / "out")])
    assert rc == 2 and "has no config.json" in one_line(err, "export")


def test_export_of_a_foreign_model_type(tmp_path, no_hub_requests):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama"}')
    rc, _, err = run(["export", str(tmp_path / "llama"), str(tmp_path / "out")])
    line = one_line(err, "export")
    assert rc == 2 and "model_type='llama' is not a paperzoo architecture" in line
    assert "paperzoo_retnet" in line and "paperzoo_rrl" in line


def test_export_without_weights_is_one_line(tmp_path, no_hub_requests):
    folder = tmp_path / "no-weights"
    tiny_retnet().config.save_pretrained(folder)
    rc, _, err = run(["export", str(folder), str(tmp_path / "out")])
    assert rc == 2 and one_line(err, "export").startswith(f"cannot load the model in {folder}: ")
    assert not (tmp_path / "out").exists()


def test_export_refuses_to_replace_a_folder_that_is_not_a_model(exported, tmp_path, no_hub_requests):
    target = tmp_path / "home"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    rc, _, err = run(["export", str(exported), str(target)])
    assert rc == 2 and "not a saved model" in one_line(err, "export")
    assert (target / "thesis.tex").read_text() == "precious"


def test_export_help_says_local_folders_only():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--help"])
    help_text = " ".join(printed.getvalue().split())
    assert "Only local folders are read" in help_text and "hf download REPO --local-dir DIR" in help_text
    assert "default: inferred from config.json" in help_text


# ----------------------------------------------------------------------------------------------------------------------
# export: the Auto class comes from the folder


def _same_export(output: Path, reference: Path) -> None:
    """The CLI's folder is the one paperzoo.hub.export writes for the same model (the card's repo id aside)."""
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in reference.iterdir())
    for name in sorted(p.name for p in reference.iterdir()):
        if name not in ("README.md",):
            assert (output / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("head", ["causal-lm", "sequence-classification"])
def test_export_retnet_infers_the_head(tmp_path, no_hub_requests, head):
    model = tiny_retnet()
    if head == "sequence-classification":
        model = paperzoo.RetNetForSequenceClassification(model.config).eval()
    model.save_pretrained(tmp_path / "saved")
    rc, out, err = run(["export", str(tmp_path / "saved"), str(tmp_path / "out")])
    assert rc == 0 and "error" not in err, err
    assert out == f"exported {tmp_path / 'saved'} -> {tmp_path / 'out'}\n"
    _same_export(tmp_path / "out", export_module.export(model, tmp_path / "reference"))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [type(model).__name__]


def test_export_retnet_with_another_head(tmp_path, no_hub_requests):
    model = tiny_retnet()
    model.save_pretrained(tmp_path / "saved")
    rc, _, err = run(["export", str(tmp_path / "saved"), str(tmp_path / "out"), "--auto-class", "AutoModel"])
    assert rc == 0 and "error" not in err, err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["RetNetModel"]
    loaded = paperzoo.RetNetModel.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        ids = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(loaded(ids).last_hidden_state, model.model(ids).last_hidden_state)


@pytest.fixture(scope="module")
def rrl_folder(tmp_path_factory):
    clf, _, _ = train("wine")
    folder = tmp_path_factory.mktemp("rrl") / "wine-rrl"
    clf.save_pretrained(folder)
    return clf, folder


def test_export_rrl_without_auto_class_keeps_the_processor(rrl_folder, tmp_path, no_hub_requests):
    clf, folder = rrl_folder
    rc, out, err = run(["export", str(folder), str(tmp_path / "out")])
    assert rc == 0 and "error" not in err, err
    output = tmp_path / "out"
    _same_export(output, export_module.export(clf.model_, tmp_path / "reference", processor=clf.processor_))
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoFeatureExtractor": "processors_rrl.RRLProcessor"}
    assert "custom_pipelines" in json.loads((output / "config.json").read_text())


@pytest.mark.parametrize("auto_class", ["AutoModelForCausalLM", "AutoTokenizer", "NotAClass"])
def test_export_rrl_with_an_unregistered_auto_class_is_one_line(rrl_folder, tmp_path, no_hub_requests, auto_class):
    _, folder = rrl_folder
    rc, _, err = run(["export", str(folder), str(tmp_path / "out"), "--auto-class", auto_class])
    assert rc == 2
    assert one_line(err, "export") == (f"--auto-class={auto_class}: paperzoo registers paperzoo_rrl models with "
                                       "AutoModel only")
