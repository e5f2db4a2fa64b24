"""`takedown platform`: add, list, token, rotate-key."""

from __future__ import annotations

from typing import Literal

import typer

from takedown.cli import common

app = typer.Typer(help="Platforms: host patterns, notice endpoint, tokens, signing keys.")


@app.command("add")
def add(
    slug: str = typer.Argument(..., help="Short name, e.g. twitter."),
    name: str = typer.Option(..., "--name", help="Display name."),
    notice_url: str = typer.Option(None, "--notice-url", help="Webhook URL for notices."),
    host: list[str] = typer.Option(
        [], "--host", help="PATTERN=CLASS, e.g. '*.twimg.com=media' (repeatable)."
    ),
    profile: str = typer.Option("ru-2021", "--profile", help="Jurisdiction profile."),
    range_: list[str] = typer.Option(
        [], "--range", help="Address range it serves from, e.g. 203.0.113.0/24 (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Add a platform; prints its webhook signing secret once. Declared ranges go into the
    steering set (`takedown feed export-steering`).

    Example: takedown platform add twitter --name Twitter
    --notice-url http://127.0.0.1:9000/notices --host twitter.com=text
    --host '*.twimg.com=media' --host t.co=links
    """
    from takedown import platforms

    hosts = [platforms.parse_host_spec(h) for h in host]
    info, secret = platforms.add_platform(
        common.database(),
        slug,
        name=name,
        notice_url=notice_url,
        hosts=hosts,
        profile=profile,
        ranges=range_,
        now=common.now(),
        actor=common.actor(),
    )
    if as_json:
        common.print_json({**info.as_json(), "webhook_secret": secret})
        return
    common.console.print(f"added platform [bold]{slug}[/bold] (id {info.id})")
    common.console.print(f"webhook secret (shown once): {secret}", highlight=False)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
    """List platforms with their hosts and notice endpoints.

    Example: takedown platform list --json
    """
    from takedown import platforms

    infos = platforms.list_platforms(common.database())
    if as_json:
        common.print_json([i.as_json() for i in infos])
        return
    common.print_table(
        ("slug", "name", "profile", "notice URL", "hosts", "ranges", "tokens"),
        (
            (i.slug, i.name, i.profile, i.notice_url or "-",
             ", ".join(f"{h.pattern}={h.content_class}" for h in i.hosts),
             ", ".join(i.ranges) or "-", i.tokens)
            for i in infos
        ),
    )  # fmt: skip


@app.command("update")
def update(
    slug: str = typer.Argument(..., help="The platform."),
    range_: list[str] = typer.Option(
        [], "--range", help="Address range it serves from (repeatable); replaces the declared ones."
    ),
    clear_ranges: bool = typer.Option(False, "--clear-ranges", help="Declare no ranges."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Change a platform's declared address ranges (what the steering export diverts).

    Example: takedown platform update twitter --range 203.0.113.0/24 --range 2001:db8::/48
    """
    from takedown import platforms
    from takedown.errors import UsageError

    if not range_ and not clear_ranges:
        raise UsageError("nothing to update: give --range or --clear-ranges", where="--range")
    if range_ and clear_ranges:
        raise UsageError("--range and --clear-ranges together", where="--clear-ranges")
    info = platforms.set_ranges(
        common.database(), slug, range_, now=common.now(), actor=common.actor()
    )
    if as_json:
        common.print_json({**info.as_json(), "state": "updated"})
        return
    common.console.print(f"{slug}: ranges {', '.join(info.ranges) or '(none)'}", highlight=False)


@app.command("token")
def token(
    slug: str = typer.Argument(...),
    revoke_others: bool = typer.Option(False, "--revoke-others", help="Revoke older tokens."),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Issue an API token for the platform (shown once, stored hashed).

    Example: takedown platform token twitter --revoke-others --json
    """
    from takedown import platforms

    value = platforms.issue_token(
        common.database(),
        slug,
        now=common.now(),
        actor=common.actor(),
        revoke_others=revoke_others,
    )
    if as_json:
        common.print_json({"platform": slug, "token": value})
    else:
        common.console.print(f"API token for {slug} (shown once): {value}", highlight=False)


@app.command("rotate-key")
def rotate_key(
    slug: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Machine output."),
) -> None:
    """Replace the platform's webhook signing secret; prints the new one once.

    Example: takedown platform rotate-key twitter --json
    """
    from takedown import platforms

    secret = platforms.rotate_key(common.database(), slug, now=common.now(), actor=common.actor())
    if as_json:
        common.print_json({"platform": slug, "webhook_secret": secret})
    else:
        common.console.print(f"new webhook secret for {slug}: {secret}", highlight=False)


@app.command("obligation")
def obligation(
    slug: str = typer.Argument(..., metavar="SLUG"),
    kind: str = typer.Argument(..., metavar="KIND", help="e.g. data-localisation"),
    state: Literal["compliant", "violating"] = typer.Option(
        ..., "--state", help="The platform's state under the obligation."
    ),
    decision: str = typer.Option(..., "--decision", help="The decision establishing it."),
    as_json: bool = typer.Option(False, "--json", help="Machine output: the record."),
) -> None:
    """Record a platform's obligation state (e.g. data-localisation violating).

    Example: takedown platform obligation twitter data-localisation --state violating
    --decision 27-31-2021/Ид4 --json
    """
    from takedown.policy import measures

    now = common.now()
    obligation_id = measures.set_obligation(
        common.database(), slug, kind, state, decision, now, common.actor()
    )
    if as_json:
        common.print_json(
            {"id": obligation_id, "platform": slug, "kind": kind, "state": state,
             "decision": decision, "at": now}
        )  # fmt: skip
        return
    common.console.print(f"{slug}: {kind} {state} (decision {decision})", highlight=False)
