"""Python client of the graph query service (sync, httpx, one pooled connection per client)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx


class GraphAPIError(RuntimeError):
    """The service answered with an error; ``status`` is the HTTP status, ``message`` its ``error``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class GraphClient:
    """``GraphClient(base_url, token)``; methods mirror the HTTP API and return its JSON as dicts.

    The caller passes where the service is and the bearer token (``RDG_API_URL``/``RDG_API_TOKEN``
    through the settings, for the CLI); with a token every request carries
    ``Authorization: Bearer <token>``.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport, headers=headers)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                msg = r.json().get("error", r.text)
            except ValueError:
                msg = r.text
            raise GraphAPIError(r.status_code, str(msg))
        return r.json()

    def health(self) -> dict[str, Any]:
        return self._check(self._http.get("/healthz"))  # type: ignore[no-any-return]

    def node(self, node_type: str, node_id: str, as_of: int | None = None) -> dict[str, Any] | None:
        """The node (as of ``as_of`` epoch ms when given), or None when it does not exist (then)."""
        r = self._http.get(f"/v1/nodes/{_seg(node_type)}/{_seg(node_id)}",
                           params={"as_of": as_of} if as_of is not None else None)
        if r.status_code == 404 and "not found" in r.text:
            return None
        return self._check(r)  # type: ignore[no-any-return]

    def edges(self, edge_type: str, node_id: str, direction: str = "out", limit: int = 100,
              since_ms: int | None = None, order: str = "latest", page_token: str | None = None,
              as_of: int | None = None, include_expired: bool = False) -> dict[str, Any]:
        """One page: ``{"edges": [...], "next_page_token": str | None}`` (as of ``as_of`` epoch ms, and with
        edges whose TTL has passed when ``include_expired``; such answers carry ``source``)."""
        params: dict[str, Any] = {"direction": direction, "limit": limit, "order": order}
        if as_of is not None:
            params["as_of"] = as_of
        if include_expired:
            params["include_expired"] = "true"
        if since_ms is not None:
            params["since"] = since_ms
        if page_token:
            params["page_token"] = page_token
        return self._check(self._http.get(f"/v1/edges/{_seg(edge_type)}/{_seg(node_id)}", params=params))  # type: ignore[no-any-return]

    def count(self, edge_type: str, node_id: str, direction: str = "out") -> dict[str, Any]:
        """A node's degree: ``{"count": n, "exact": bool}``."""
        return self._check(self._http.get(f"/v1/edges/{_seg(edge_type)}/{_seg(node_id)}/count",  # type: ignore[no-any-return]
                                          params={"direction": direction}))

    def iter_edges(self, edge_type: str, node_id: str, direction: str = "out", page_size: int = 1000,
                   since_ms: int | None = None, order: str = "any", as_of: int | None = None,
                   include_expired: bool = False) -> Iterator[dict[str, Any]]:
        """Every edge, following page tokens."""
        token: str | None = None
        while True:
            page = self.edges(edge_type, node_id, direction, page_size, since_ms, order, token, as_of, include_expired)
            yield from page["edges"]
            token = page.get("next_page_token")
            if not token:
                return

    def traverse(self, start_type: str, start_id: str, hops: Sequence[Mapping[str, Any]],
                 include_nodes: bool = False, as_of: int | None = None) -> dict[str, Any]:
        """``hops``: dicts with ``edge`` and optional ``direction``, ``limit``, ``lookback``, ``order``;
        ``as_of`` (epoch ms): the graph as it was then."""
        body: dict[str, Any] = {"start": {"type": start_type, "id": start_id}, "hops": [dict(h) for h in hops],
                                "include_nodes": include_nodes}
        if as_of is not None:
            body["as_of"] = as_of
        return self._check(self._http.post("/v1/traverse", json=body))  # type: ignore[no-any-return]


def _seg(s: str) -> str:
    """Percent-encode one path segment (ids may contain '/', '?', spaces...)."""
    return quote(s, safe="")
