"""`push(folder, repo_id)`: upload an exported folder (paperzoo.hub.export) to the Hugging Face Hub.

The endpoint and token come from huggingface_hub as usual (`HF_ENDPOINT`, `HF_TOKEN`, `hf auth login`); `HF_ENDPOINT`
is read once, when huggingface_hub.constants is first imported.

What can go wrong on the way (no token, no network, an endpoint nobody answers on, 401/403/404 and other refusals,
offline mode) raises `PushError` with one line saying what failed, at which endpoint, and what to do. Nothing is retried
before the first answer: the first request (create_repo) is not retried by huggingface_hub, so an unreachable endpoint
fails at once.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

DEFAULT_COMMIT_MESSAGE = "Upload paperzoo export (weights, remote code, model card)"


class PushError(RuntimeError):
    """The Hub could not be reached or refused the upload; the message is one line: what, where, what to do."""


def push(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = False,
    commit_message: str | None = DEFAULT_COMMIT_MESSAGE,
    *,
    revision: str | None = None,
    create_pr: bool = False,
    commit_description: str | None = None,
    allow_patterns: Iterable[str] | None = None,
) -> CommitInfo:
    """Create the model repo `repo_id` if needed and upload the files of `folder` in one commit.

    Returns huggingface_hub's `CommitInfo`: a `str` (the commit URL) with `.oid`, `.commit_url` and `.repo_url`.
    `private` applies only when the repo is created (None: the namespace's default); an existing repo keeps its
    visibility. `allow_patterns`: upload only the files matching these names/patterns (default: all).
    Raises FileNotFoundError / ValueError for a folder that is not an export or an invalid repo id, and PushError
    when the Hub cannot be reached or refuses.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (export one with paperzoo.hub.export)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: it is not an exported model folder")
    validate_repo_id(repo_id)  # HFValidationError, a ValueError naming the id
    api = HfApi(token=token)
    endpoint = api.endpoint
    if constants.HF_HUB_OFFLINE:
        raise PushError(f"cannot push {repo_id} to {endpoint}: offline mode is on (HF_HUB_OFFLINE); unset it to "
                        "upload")
    if token is None and get_token() is None:
        raise PushError(f"no Hugging Face token to push {repo_id} to {endpoint}: log in with `hf auth login`, set "
                        "HF_TOKEN, or pass a token (--token)")
    with _explained(f"create the repo {repo_id}", repo_id, endpoint):
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    with _explained(f"upload {folder} to {repo_id}", repo_id, endpoint):
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
        )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The connection errors (refused, unknown host, timeout, dropped) of the HTTP client huggingface_hub uses:
    httpx2 from huggingface_hub 2.x, httpx before; both are its dependencies, looked up rather than imported."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class _explained:
    """Turn huggingface_hub's errors during `action` into a one-line PushError."""

    def __init__(self, action: str, repo_id: str, endpoint: str):
        self.action, self.repo_id, self.endpoint = action, repo_id, endpoint

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or not isinstance(err, Exception):
            return False
        message = self.message(err)
        if message is None:
            return False
        raise PushError(" ".join(message.split())) from err

    def message(self, err: Exception) -> str | None:
        where = f"the Hub at {self.endpoint}"
        if isinstance(err, OfflineModeIsEnabled):
            return f"cannot {self.action}: offline mode is on (HF_HUB_OFFLINE); unset it to upload"
        if isinstance(err, HfHubHTTPError):
            response = getattr(err, "response", None)
            status = getattr(response, "status_code", None)
            said = (getattr(err, "server_message", None) or "").strip()
            said = f" ({said})" if said else ""
            if status == 401:
                return (f"{where} did not accept the token (401 Unauthorized) to {self.action}{said}: log in with "
                        "`hf auth login`, set HF_TOKEN, or pass a valid write token (--token)")
            if status == 403:
                return (f"{where} refused to {self.action} (403 Forbidden){said}: use a token with write access to "
                        f"the namespace of {self.repo_id}")
            if status == 404:
                return (f"{where} answered 404 Not Found to {self.action}{said}: check the repo id {self.repo_id!r} "
                        "and that HF_ENDPOINT points to a Hugging Face Hub")
            reason = getattr(response, "reason_phrase", "") or ""
            return (f"{where} refused to {self.action} ({status} {reason}){said}; try again later, or check "
                    "HF_ENDPOINT and the token")
        if isinstance(err, _transport_errors()):
            detail = str(err) or type(err).__name__
            return (f"cannot reach {where} to {self.action} ({type(err).__name__}: {detail}): check the network "
                    "connection, proxy settings and HF_ENDPOINT, then retry")
        return None


__all__ = ["DEFAULT_COMMIT_MESSAGE", "PushError", "push"]
