"""Which fetch targets are allowed: URL rules, host normalisation and address checks.

The scraper fetches URLs chosen by users, so every hop is checked here before any socket
is opened: only http/https, no user-info, only allowed ports, and every address the host
resolves to must be public unless it falls in an explicitly allowed network. The checks
run on resolved addresses rather than on host names, so numeric tricks (``2130706433``,
``0x7f.1``) and names pointing at internal addresses are caught the same way; callers
then connect to the returned address and never resolve the name again.
"""

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import idna
from urllib3.util.connection import allowed_gai_family

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = {"http": 80, "https": 443}

# Python's is_global/is_private miss these (or call them global), yet each can reach an
# internal host: embedded IPv4 addresses, translation gateways or non-public routing.
EXTRA_DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "100.64.0.0/10",  # carrier-grade NAT, often routes to internal workloads
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "::/96",  # deprecated IPv4-compatible IPv6 (::127.0.0.1)
        "64:ff9b::/96",  # NAT64: the gateway connects to the embedded IPv4 address
        "64:ff9b:1::/48",  # local-use NAT64
        "2001::/32",  # Teredo embeds IPv4 server and client addresses
        "2002::/16",  # 6to4 embeds an IPv4 address
        "fec0::/10",  # deprecated site-local, still routed inside some networks
        "168.63.129.16/32",  # Azure's platform address (WireServer, Azure DNS), public yet host-internal
    )
)

_HOSTNAME_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class NetPolicyError(Exception):
    """Base class for targets this module refuses or cannot resolve."""


class InvalidTarget(NetPolicyError):
    """The URL is malformed: no host, bad port number, undecodable host name."""


class BlockedTarget(NetPolicyError):
    """The URL is well formed but points somewhere the scraper must not go."""


class UnresolvableHost(NetPolicyError):
    """Name resolution failed or returned nothing; may succeed later."""


@dataclass(frozen=True)
class Target:
    """One checked hop: normalised host and the URL rebuilt from the checked parts."""

    scheme: str
    host: str
    port: int
    url: str

    @property
    def host_header(self) -> str:
        """The Host header value browsers would send for this URL."""
        return _netloc(self.scheme, self.host, self.port)

    @property
    def literal_address(self) -> IPAddress | None:
        """The address itself when the host is an IP literal, else None."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_target(url: str, allowed_ports: frozenset[int]) -> Target:
    """Check a URL's scheme, user-info, host and port; raise before anything is resolved."""
    if _CONTROL_CHARS.search(url):
        raise InvalidTarget("URL contains control characters")
    parts = _split(url.strip())
    if parts.scheme not in ALLOWED_SCHEMES:
        raise BlockedTarget(f"scheme {parts.scheme!r} is not allowed")
    if parts.username is not None or parts.password is not None:
        raise BlockedTarget("URLs with user-info are not allowed")
    host = normalise_host(parts.hostname or "")
    port = _port_of(parts)
    if port not in allowed_ports:
        raise BlockedTarget(f"port {port} is not allowed")
    return Target(parts.scheme, host, port, _rebuild(parts, host, port))


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidTarget(f"unparsable URL: {exc}") from exc
    return parts._replace(scheme=parts.scheme.lower())


def _port_of(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidTarget(f"invalid port: {exc}") from exc
    return ALLOWED_SCHEMES[parts.scheme] if port is None else port


def _rebuild(parts: SplitResult, host: str, port: int) -> str:
    netloc = _netloc(parts.scheme, host, port)
    # The fragment never reaches the server, and dropping it keeps one URL per resource.
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _netloc(scheme: str, host: str, port: int) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return bracketed if port == ALLOWED_SCHEMES[scheme] else f"{bracketed}:{port}"


def normalise_host(host: str) -> str:
    """Canonical ASCII form of a URL host: UTS 46 for names, dotted/compressed form for IPs.

    Legacy IPv4 spellings (``2130706433``, ``0x7f.1``, ``127.1``) become dotted quads, as in
    browsers (WHATWG URL), so a host is either a checked literal or a name to resolve.
    """
    host = unquote(host).strip()
    if not host:
        raise InvalidTarget("URL has no host")
    literal = _parse_ip_literal(host)
    if literal is not None:
        return str(literal)
    name = _to_ascii(host).lower().removesuffix(".")
    if _ends_in_number(name):
        return str(_parse_legacy_ipv4(name))
    _check_name(name)
    return name


def _parse_ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _to_ascii(host: str) -> str:
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidTarget(f"invalid international host name: {exc}") from exc


def _ends_in_number(name: str) -> bool:
    return _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]) is not None


def _parse_legacy_ipv4(name: str) -> ipaddress.IPv4Address:
    try:
        # inet_aton implements exactly the historical forms getaddrinfo would accept.
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError as exc:
        raise InvalidTarget(f"invalid IPv4 address {name!r}") from exc


def _check_name(name: str) -> None:
    labels = name.split(".")
    if len(name) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise InvalidTarget(f"invalid host name {name!r}")
    # RFC 6761: these names are loopback by definition, whatever DNS says.
    if labels[-1] == "localhost":
        raise BlockedTarget(f"host {name!r} is a loopback name")


def is_address_allowed(address: IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> bool:
    """True if the address is public, or inside one of the explicitly allowed networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed_networks):
        return True
    return _is_public(address)


def _is_public(address: IPAddress) -> bool:
    special = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    if special or any(address in network for network in EXTRA_DENIED_NETWORKS):
        return False
    return address.is_global


def resolve_checked(
    target: Target, resolver: Resolver, allowed_networks: Iterable[IPNetwork] = ()
) -> str:
    """Resolve the target once, require every address to be allowed, return the one to use.

    All addresses are checked, not just the one used, so an answer mixing a public and an
    internal address is refused rather than depending on which one a client picks.
    """
    addresses = [_as_address(text) for text in _resolve(target, resolver)]
    networks = tuple(allowed_networks)
    for address in addresses:
        if not is_address_allowed(address, networks):
            raise BlockedTarget(f"{target.host} is or resolves to non-public address {address}")
    return str(addresses[0])


def _resolve(target: Target, resolver: Resolver) -> list[str]:
    if target.literal_address is not None:
        return [target.host]
    try:
        addresses = resolver(target.host, target.port)
    except OSError as exc:
        raise UnresolvableHost(f"cannot resolve {target.host}: {exc}") from exc
    if not addresses:
        raise UnresolvableHost(f"{target.host} has no addresses")
    return addresses


def _as_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        # Fail closed: an answer we cannot classify is never connected to.
        raise BlockedTarget(f"resolver returned a non-address {text!r}") from exc


def resolve_with_getaddrinfo(host: str, port: int) -> list[str]:
    """Default resolver: the system's getaddrinfo, in its preference order, de-duplicated."""
    infos = socket.getaddrinfo(host, port, family=allowed_gai_family(), type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
