"""A file of a dataset repository on the Hugging Face hub: downloaded through the hub's client into its cache
($HF_HOME, from $HF_ENDPOINT) when there is no mirror, or read from a mirror that `robustlm-mirror build` filled, at
<mirror>/datasets/hub/<owner>/<name>/<revision>/<path>. Hub datasets publish no checksums: the SHA-256 of what was
read goes into the dataset's manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..sources import BUILD_COMMAND, DataSourceError

HUB_MIRROR_DIR = "datasets/hub"


@dataclass(frozen=True)
class HubDatasetFile:
    repository: str  # <owner>/<name>
    path: str  # in the repository
    revision: str  # a branch, tag or commit
    what: str

    @property
    def relative_path(self) -> str:
        """Its path in the mirror layout."""
        return f"{HUB_MIRROR_DIR}/{self.repository}/{self.revision}/{self.path}"

    def locate(self, mirror: Path | None) -> Path:
        if mirror is not None:
            path = Path(mirror) / self.relative_path
            if not path.is_file():
                raise DataSourceError(
                    f"missing {self.what}: {path} ({self.path} of hub dataset {self.repository} at {self.revision}); "
                    f"`{BUILD_COMMAND}` fetches it on a machine with internet"
                )
            return path
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.repository, self.path, repo_type="dataset", revision=self.revision))
        except Exception as exc:  # the hub client raises its own HTTP, offline and not-found errors
            raise DataSourceError(
                f"cannot download {self.what}: {self.path} of hub dataset {self.repository} at {self.revision} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def cached(self) -> bool:
        """Whether the hub's cache holds it (a run without a mirror then needs no network)."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repository, self.path, revision=self.revision, repo_type="dataset")
        return isinstance(found, str)

    def fetch_into(self, mirror: Path) -> bool:
        """Download it into `mirror`'s layout; False if it is there already."""
        if (mirror / self.relative_path).is_file():
            return False
        from huggingface_hub import hf_hub_download

        revision_dir = mirror / HUB_MIRROR_DIR / self.repository / self.revision
        try:
            hf_hub_download(
                self.repository, self.path, repo_type="dataset", revision=self.revision, local_dir=revision_dir
            )
        except Exception as exc:  # the hub client raises its own HTTP and not-found errors
            raise DataSourceError(
                f"cannot fetch {self.what}: {self.path} of hub dataset {self.repository} at {self.revision} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return True

    def provenance(self, mirror: Path | None) -> dict:
        return {
            "repository": self.repository,
            "revision": self.revision,
            "path": self.path,
            "read_from": "mirror" if mirror is not None else "hub",
            "sha256": hashlib.sha256(self.locate(mirror).read_bytes()).hexdigest(),
        }
