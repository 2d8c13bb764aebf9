"""``rdg query``: read the graph through the query service (node, edges, traverse)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from rdg_platform.cli.context import settings
from rdg_platform.local_services.credentials import local_role_settings
from rdg_platform.serving.client import GraphAPIError, GraphClient

query_app = typer.Typer(help="Query the graph through the HTTP query service (see `rdg serve`).",
                        no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="Service base URL (default: RDG_API_URL)")]
AsOfOpt = Annotated[int | None, typer.Option("--as-of", help="The graph as it was at this epoch ms (from the live "
                                                            "store when exact, else the Iceberg history)")]


def _client(url: str | None) -> GraphClient:
    """A client for ``url`` (default: the settings' API URL) with the settings' bearer token
    (``RDG_API_TOKEN``); without one, the local reader role's token (least privilege)."""
    s = settings()
    has_token = s.api.token is not None and s.api.token.get_secret_value() != ""
    api = (s if has_token else local_role_settings(s.model_copy(update={"api": s.api.model_copy(
        update={"token": None})}), "reader")).api
    token = api.token.get_secret_value() if api.token is not None else None
    return GraphClient(url or api.base_url, token)


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, GraphAPIError) and exc.status < 500 else 1)


@query_app.command("node")
def node(node_type: Annotated[str, typer.Argument(help="Node type, e.g. account")],
         node_id: Annotated[str, typer.Argument(help="Node id")],
         as_of: AsOfOpt = None,
         url: UrlOpt = None) -> None:
    """Print one node as JSON (exit 3 when it does not exist)."""
    try:
        with _client(url) as c:
            n = c.node(node_type, node_id, as_of)
    except Exception as exc:
        raise _fail(exc) from None
    if n is None:
        typer.echo(f"node {node_type}/{node_id} not found", err=True)
        raise typer.Exit(3)
    _print(n)


@query_app.command("edges")
def edges(edge_type: Annotated[str, typer.Argument(help="Edge type, e.g. logged_in_from")],
          node_id: Annotated[str, typer.Argument(help="Origin node id (or destination with --direction in)")],
          direction: Annotated[str, typer.Option(help="out or in")] = "out",
          limit: Annotated[int, typer.Option(help="Edges per page (1-1000)")] = 100,
          since: Annotated[int | None, typer.Option(help="Only edges updated at/after this epoch ms")] = None,
          order: Annotated[str, typer.Option(help="latest (newest first) or any")] = "latest",
          page_token: Annotated[str | None, typer.Option(help="Continue from a previous page")] = None,
          all_pages: Annotated[bool, typer.Option("--all", help="Follow page tokens and print every edge")] = False,
          as_of: AsOfOpt = None,
          include_expired: Annotated[bool, typer.Option(
              "--include-expired", help="Also edges whose TTL has passed (from the history)")] = False,
          url: UrlOpt = None) -> None:
    """List a node's edges of one type as JSON."""
    try:
        with _client(url) as c:
            if all_pages:
                _print({"edges": list(c.iter_edges(edge_type, node_id, direction, limit, since, order, as_of,
                                                   include_expired)),
                        "next_page_token": None})
            else:
                _print(c.edges(edge_type, node_id, direction, limit, since, order, page_token, as_of, include_expired))
    except Exception as exc:
        raise _fail(exc) from None


@query_app.command("count")
def count(edge_type: Annotated[str, typer.Argument(help="Edge type, e.g. started_watching")],
          node_id: Annotated[str, typer.Argument(help="Node id")],
          direction: Annotated[str, typer.Option(help="out or in")] = "out",
          url: UrlOpt = None) -> None:
    """Print a node's number of edges of one type as JSON ({"count", "exact"})."""
    try:
        with _client(url) as c:
            _print(c.count(edge_type, node_id, direction))
    except Exception as exc:
        raise _fail(exc) from None


def parse_hop(text: str) -> dict[str, Any]:
    """``edge[:direction[:limit[:lookback[:order]]]]`` -> hop dict (empty fields take defaults)."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 5:
        raise typer.BadParameter(f"hop {text!r}: expected edge[:direction[:limit[:lookback[:order]]]]")
    hop: dict[str, Any] = {"edge": parts[0]}
    names = ("direction", "limit", "lookback", "order")
    for name, val in zip(names, parts[1:], strict=False):
        if val == "":
            continue
        if name == "limit":
            try:
                hop[name] = int(val)
            except ValueError:
                raise typer.BadParameter(f"hop {text!r}: limit {val!r} is not an integer") from None
        else:
            hop[name] = val
    return hop


@query_app.command("traverse")
def traverse(start_type: Annotated[str, typer.Argument(help="Start node type")],
             start_id: Annotated[str, typer.Argument(help="Start node id")],
             hop: Annotated[list[str], typer.Option(
                 "--hop", help="edge[:direction[:limit[:lookback[:order]]]], repeat for up to 4 hops, "
                               "e.g. --hop has_profile --hop started_watching:out:10:30d:latest")],
             include_nodes: Annotated[bool, typer.Option(help="Include the nodes each hop reaches")] = False,
             as_of: AsOfOpt = None,
             url: UrlOpt = None) -> None:
    """Run a multi-hop traversal and print the levels as JSON."""
    hops = [parse_hop(h) for h in hop]
    try:
        with _client(url) as c:
            _print(c.traverse(start_type, start_id, hops, include_nodes, as_of))
    except Exception as exc:
        raise _fail(exc) from None
