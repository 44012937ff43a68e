"""What scripts/api.sh starts, decided from the settings: nginx in front of gunicorn, or gunicorn alone.

    python -m api.launch RUN_DIR     (prints shell assignments for api.sh; refusals are one line, status 2)

It refuses a non-loopback address without an API key, and one without nginx unless `proxy = "none"`
says so: gunicorn's threads each wait on one connection, so a few slow clients would starve it
(docs/benchmarks.md). On loopback without nginx it warns and serves anyway. With nginx it writes
RUN_DIR/nginx/nginx.conf with the body limit and client timeout of the settings.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
from pathlib import Path
from string import Template

from api.security import is_loopback, require_key_beyond_loopback
from lib.cli import new_parser, run
from lib.errors import SettingsError
from lib.settings import Settings, load_settings
from lib.store.catalog_copy import repair_catalog

log = logging.getLogger("api.launch")
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
GUNICORN_TIMEOUT = 120  # seconds; nginx waits a little longer for an answer


class NginxTemplate(Template):
    delimiter = "@"


def find_nginx() -> str | None:
    """nginx on the PATH, or where Debian puts it (/usr/sbin is not on a normal user's PATH)."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def choose_proxy(settings: Settings, nginx: str | None) -> bool:
    """Whether to put nginx in front, or why it cannot be done without it."""
    if settings.proxy == "none":
        log.warning("serving without a buffering front end (proxy = none): slow clients can tie up gunicorn's threads")
        return False
    if nginx:
        return True
    if settings.proxy == "nginx" or not is_loopback(settings.host):
        raise SettingsError(f"nginx is not installed, and listening on {settings.host} needs it in front of gunicorn "
                            "(slow clients would starve it): run scripts/setup_nginx.sh, or set proxy = none to "
                            "serve without it")
    log.warning("nginx is not installed: serving with gunicorn alone, where slow clients can tie up its threads "
                "(scripts/setup_nginx.sh installs nginx)")
    return False


def nginx_config(settings: Settings, prefix: Path, socket: Path) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return NginxTemplate(TEMPLATE.read_text()).substitute(
        user_line="user root;" if os.geteuid() == 0 else "", prefix=prefix, socket=socket,
        listen=f"{host}:{settings.port}", max_body=f"{settings.max_upload_mb}m", client_timeout=settings.client_timeout,
        read_timeout=GUNICORN_TIMEOUT + 10)


def plan(args: argparse.Namespace) -> None:
    settings = load_settings()
    require_key_beyond_loopback(settings)
    repair_catalog(settings.indexes_dir, rebuild=False)  # a damaged catalog: its good copy, or one line and status 2
    nginx = find_nginx()
    assignments = {"PROXY": "none"}
    if choose_proxy(settings, nginx):
        assert nginx is not None, "a proxy is chosen only where nginx is found"
        prefix = Path(args.run_dir).resolve() / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        socket = prefix.parent / "gunicorn.sock"
        (prefix / "nginx.conf").write_text(nginx_config(settings, prefix, socket))
        assignments = {"PROXY": "nginx", "NGINX": nginx, "NGINX_PREFIX": str(prefix), "GUNICORN_SOCKET": str(socket)}
    print("\n".join(f"{name}={shlex.quote(value)}" for name, value in assignments.items()))


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("run_dir", help="a private folder for this run (nginx's files, gunicorn's socket)")
    return parser


def main(argv: list[str] | None = None) -> None:
    run("api.sh", make_parser(), plan, argv)


if __name__ == "__main__":
    main()
