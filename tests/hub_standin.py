"""A Hugging Face hub on the loopback serving model repositories from local directories, for HF_ENDPOINT=<url>: the
endpoints that `huggingface_hub` (snapshot_download, hf_hub_download) and transformers' `from_pretrained` call, so
that the pipeline's download code runs for real, only against another server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path


class HubStandIn:
    def __init__(self, repositories: dict[str, Path]):
        self.repositories = repositories
        self.downloads: list[str] = []  # "<repo>/<file>" of every file body served
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub.respond(self, body=False)

            def do_GET(self):
                hub.respond(self, body=True)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> HubStandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()

    @staticmethod
    def commit(repository: str) -> str:
        return hashlib.sha1(repository.encode()).hexdigest()

    def respond(self, request: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = request.path.split("?")[0]
        if path.startswith("/api/models/") and "/tree/" in path:  # /api/models/<repo>/tree/<revision>[/<folder>]
            repository, _, rest = path.removeprefix("/api/models/").partition("/tree/")
            if repository not in self.repositories:
                return self.error(request, 404, "RepoNotFound")
            folder = self.repositories[repository] / rest.partition("/")[2]
            if not folder.is_dir():
                return self.error(request, 404, "EntryNotFound")
            entries = [
                {
                    "type": "directory" if entry.is_dir() else "file",
                    "oid": self.commit(entry.name),
                    "size": 0 if entry.is_dir() else entry.stat().st_size,
                    "path": str(entry.relative_to(self.repositories[repository])),
                }
                for entry in sorted(folder.iterdir())
            ]
            return self.send(request, json.dumps(entries).encode(), "application/json", body, repository)
        if path.startswith("/api/models/"):  # /api/models/<repo>[/revision/<revision>]
            repository = path.removeprefix("/api/models/").split("/revision/")[0]
            if repository not in self.repositories:
                return self.error(request, 404, "RepoNotFound")
            files = sorted(
                str(file.relative_to(self.repositories[repository]))
                for file in self.repositories[repository].rglob("*")
                if file.is_file()
            )
            info = {
                "id": repository,
                "modelId": repository,
                "sha": self.commit(repository),
                "private": False,
                "disabled": False,
                "gated": False,
                "siblings": [{"rfilename": name} for name in files],
            }
            return self.send(request, json.dumps(info).encode(), "application/json", body, repository)
        repository, separator, rest = path.lstrip("/").partition("/resolve/")
        if not separator or repository not in self.repositories:
            return self.error(request, 404, "RepoNotFound")
        file = self.repositories[repository] / rest.partition("/")[2]  # <revision>/<file>
        if not file.is_file():
            return self.error(request, 404, "EntryNotFound")
        if body:
            self.downloads.append(f"{repository}/{file.name}")
        self.send(request, file.read_bytes(), "application/octet-stream", body, repository)

    def send(self, request, content: bytes, content_type: str, body: bool, repository: str) -> None:
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(content)))
        request.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        request.send_header("X-Repo-Commit", self.commit(repository))
        request.end_headers()
        if body:
            request.wfile.write(content)

    @staticmethod
    def error(request, status: int, code: str) -> None:
        request.send_response(status)
        request.send_header("X-Error-Code", code)
        request.send_header("Content-Length", "0")
        request.end_headers()
