"""`takedown sim`: the platform simulator."""

from __future__ import annotations

import typer

from takedown.cli import common

app = typer.Typer(help="Simulators: a platform that receives notices and acts.")


@app.command("platform")
def platform(
    port: int = typer.Option(..., "--port", **common.PORT_RANGE, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host"),
    items: int = typer.Option(0, "--items", min=0, help="Posts listed at /_sim/posts."),
    behavior: str = typer.Option(None, "--behavior", "--behaviour", help="Behaviour TOML."),
    api: str = typer.Option(None, "--api", help="Platform API base URL."),
    token: str = typer.Option(None, "--token", envvar="TAKEDOWN_SIM_TOKEN"),
    secret: str = typer.Option(
        None, "--secret", envvar="TAKEDOWN_SIM_SECRET", help="Webhook signing secret."
    ),
    tick_every: float = typer.Option(
        1.0, "--tick-every", help="Act every N wall seconds (0: only on POST /_sim/tick)."
    ),
) -> None:
    """Run a platform simulator on HOST:PORT (time from TAKEDOWN_CLOCK).

    Example: takedown sim platform --port 9000 --items 6200
    --behavior examples/behaviours/twitter-2021.toml --api http://127.0.0.1:8470
    --token T --secret S --tick-every 0
    """
    import uvicorn

    from takedown.clock import clock_from_env
    from takedown.sim.behaviour import load
    from takedown.sim.server import SimPlatform, create_sim_app

    sock = common.listen_socket(host, port)
    sim = SimPlatform(
        load(behavior),
        clock_from_env(),
        secret=secret,
        api=api,
        token=token,
        items=items,
        tick_every=tick_every,
    )
    common.err_console.print(f"simulator '{sim.behaviour.name}' on http://{host}:{port}")
    config = uvicorn.Config(
        create_sim_app(sim), host=host, port=port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])
