"""`push(folder, repo_id)`: upload an exported folder (paperzoo.hub.export) to the Hugging Face Hub.

The endpoint and token come from huggingface_hub as usual (`HF_ENDPOINT`, `HF_TOKEN`, `hf auth login`); `HF_ENDPOINT`
is read once, when huggingface_hub.constants is first imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi

DEFAULT_COMMIT_MESSAGE = "Upload paperzoo export (weights, remote code, model card)"


def push(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    *,
    revision: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Create the model repo `repo_id` if needed and upload every file of `folder` in one commit.

    Returns huggingface_hub's `CommitInfo`: a `str` (the commit URL) with `.oid`, `.commit_url` and `.repo_url`.
    `private` applies only when the repo is created; an existing repo keeps its visibility.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (export one with paperzoo.hub.export)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: it is not an exported model folder")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="model",
        commit_message=commit_message,
        revision=revision,
        create_pr=create_pr,
    )


__all__ = ["DEFAULT_COMMIT_MESSAGE", "push"]
