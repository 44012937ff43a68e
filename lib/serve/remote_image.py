"""A picture fetched from a URL (clip-retrieval's `image_url`), without making the server an SSRF hole.

A server that fetches URLs for anyone lets anyone reach what only the server can: its loopback services, the
cloud's metadata address (169.254.169.254), the private network behind it. So:
- fetching is off unless the settings allow it (`allow_image_urls`);
- only http and https, no credentials in the URL, no redirects (a public address may redirect to a private one);
- the host name is resolved once here and every address it has must be public (not loopback, link-local,
  private, shared, reserved or multicast); the connection goes to the address that was checked, so a second
  DNS answer cannot swap it (DNS rebinding), while TLS still verifies the certificate for the host name;
- the body is read up to `max_bytes` and within `timeout_s` in all; more is refused, not truncated.
urllib3 (requests' own transport) does the HTTP, pinned to the checked address.
"""
from __future__ import annotations

import ipaddress
import socket
import time

import certifi
import urllib3
from urllib3.exceptions import HTTPError, LocationParseError

from lib.errors import QueryError

CHUNK = 64 * 1024
USER_AGENT = "clipsearch (image_url of a search)"


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def public_address(host: str, port: int) -> str:
    """The first address of `host`, provided every address it resolves to is public."""
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError) as err:
        raise QueryError(f"image_url: the host {host!r} does not resolve ({err})") from None
    private = sorted(a for a in found if not is_public(a))
    if private or not found:
        raise QueryError(f"image_url: {host!r} is at a loopback, link-local or private address ({private[0]}); "
                         "only public addresses are fetched")
    return sorted(found)[0]


def fetch_image(url: str, max_bytes: int, timeout_s: float = 10.0) -> bytes:
    """The body of a GET of `url`, under the rules of the module docstring; QueryError says what went wrong."""
    try:
        parsed = urllib3.util.parse_url(url)
    except LocationParseError:
        raise QueryError("image_url is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise QueryError("image_url must be an http or https URL with a host")
    if parsed.auth:
        raise QueryError("image_url may not carry a user name or password")
    host = parsed.host.strip("[]")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = public_address(host, port)
    timeout = urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s)
    pool: urllib3.HTTPConnectionPool = (
        urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                    cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), timeout=timeout, retries=False)
        if parsed.scheme == "https" else urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False))
    deadline = time.monotonic() + timeout_s
    try:
        with pool:
            response = pool.urlopen("GET", parsed.request_uri, redirect=False, preload_content=False,
                                    headers={"Host": parsed.netloc or host, "User-Agent": USER_AGENT})
            if 300 <= response.status < 400:
                raise QueryError(f"image_url answered {response.status} (a redirect); give the final URL")
            if response.status != 200:
                raise QueryError(f"image_url answered HTTP {response.status}")
            body = bytearray()
            for chunk in response.stream(CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise QueryError(f"image_url: the picture is over {max_bytes // (1024 * 1024)} MiB")
                if time.monotonic() > deadline:
                    raise QueryError(f"image_url: fetching took over {timeout_s:g} s")
            return bytes(body)
    except HTTPError as err:
        raise QueryError(f"image_url could not be fetched ({type(err).__name__})") from None
