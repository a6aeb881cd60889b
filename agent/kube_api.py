"""The few bits of a Kubernetes API client the agent needs (pod-deletion-cost, node info).

In a pod the API server is ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the
service-account token authenticates and the cluster CA verifies TLS. The token is read fresh for
every request: projected tokens rotate (kubelet rewrites the file about hourly).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_PATH = f"{SERVICE_ACCOUNT_DIR}/token"
CA_PATH = f"{SERVICE_ACCOUNT_DIR}/ca.crt"
NAMESPACE_PATH = f"{SERVICE_ACCOUNT_DIR}/namespace"
HOST_VARIABLE = "KUBERNETES_SERVICE_HOST"

# What a request can raise besides an HTTP status: no token file, refused, TLS, timeouts.
REQUEST_ERRORS: tuple[type[BaseException], ...] = (OSError, ssl.SSLError, httpx.HTTPError)


def api_url_from_env(env: Mapping[str, str]) -> str | None:
    """The in-cluster API server URL, or None outside a cluster (no service host)."""
    host = (env.get(HOST_VARIABLE) or "").strip()
    if not host:
        return None
    port = (env.get("KUBERNETES_SERVICE_PORT") or "443").strip()
    bracketed = f"[{host}]" if ":" in host else host
    return f"https://{bracketed}:{port}"


class KubeApi:
    """Sends one request at a time to the API server as the pod's service account."""

    def __init__(
        self,
        api_url: str,
        token_path: str = TOKEN_PATH,
        ca_path: str = CA_PATH,
        transport: httpx.BaseTransport | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token_path = token_path
        self.ca_path = ca_path
        self.transport = transport
        self.timeout_seconds = timeout_seconds

    def url(self, path: str) -> str:
        return f"{self.api_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """One request; raises one of ``REQUEST_ERRORS`` when no response came back."""
        token = Path(self.token_path).read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        with httpx.Client(
            transport=self.transport,
            verify=self._verify(),
            timeout=self.timeout_seconds,
            trust_env=False,  # never through an HTTP(S)_PROXY: the API server is in-cluster
        ) as client:
            return client.request(method, self.url(path), content=content, headers=headers)

    def _verify(self) -> ssl.SSLContext | bool:
        if not self.api_url.startswith("https:"):
            return True  # plain http (tests); nothing to verify
        return ssl.create_default_context(cafile=self.ca_path)
