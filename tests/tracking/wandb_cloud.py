"""A stand-in for the W&B cloud on a loopback port: just enough GraphQL and file_stream for `wandb sync`.

It records which runs were created or resumed (`runs`) and the history rows
each run received, in arrival order (`history`). Everything else (the real
client, `wandb sync`, the offline files) is the real thing.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeCloud(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.runs: list[str] = []
        self.history: dict[str, list[dict]] = {}
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):  # file uploads
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        if self.path.endswith("/file_stream"):
            run = self.path.split("/")[-2]
            content = json.loads(body).get("files", {}).get("wandb-history.jsonl", {}).get("content", [])
            with server.lock:
                server.history.setdefault(run, []).extend(json.loads(line) for line in content)
            return self._reply({"exitcode": None, "limits": {}})
        if self.path != "/graphql":
            return self._reply({})
        request = json.loads(body)
        query, variables = request["query"], request.get("variables") or {}
        if "upsertBucket" in query:
            name = variables["name"]
            with server.lock:
                server.runs.append(name)
            project = {"id": "p", "name": variables.get("project") or "p", "entity": {"id": "e", "name": "e"}}
            bucket = {
                "id": f"b-{name}",
                "name": name,
                "displayName": name,
                "description": "",
                "config": "{}",
                "sweepName": None,
                "historyLineCount": 0,
                "project": project,
            }
            return self._reply({"data": {"upsertBucket": {"inserted": True, "bucket": bucket}}})
        if "createRunFiles" in query:
            files = [{"name": f, "uploadUrl": f"{server.url}/upload/{f}"} for f in variables["files"]]
            return self._reply({"data": {"createRunFiles": {"runID": "r", "uploadHeaders": [], "files": files}}})
        if "serverInfo" in query:
            return self._reply({"data": {"serverInfo": {"features": []}}})
        return self._reply({"data": {}})
