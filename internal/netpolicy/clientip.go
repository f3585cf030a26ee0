package netpolicy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/lapis-health/lapis/internal/httpx"
)

// Forwarding headers a trusted proxy may set.
const (
	// HeaderXFF is X-Forwarded-For: a comma-separated list of addresses,
	// each proxy appending the address it received the request from.
	HeaderXFF = "X-Forwarded-For"
	// HeaderForwarded is the RFC 7239 Forwarded header (its for= values).
	HeaderForwarded = "Forwarded"
)

// maxHops bounds how many trusted forwarding entries are walked; a longer
// chain of trusted hops is treated as malformed.
const maxHops = 32

// resolver finds the client address behind trusted proxies.
type resolver struct {
	trusted   []netip.Prefix
	forwarded bool // use Forwarded rather than X-Forwarded-For
}

func (rv *resolver) isTrusted(a netip.Addr) bool { return contains(rv.trusted, a) }

// resolve walks the forwarding chain right to left, starting at the direct
// peer: as long as the current hop is a trusted proxy, the entry it added
// is believed; the first untrusted hop is the client. A chain whose every
// hop is trusted resolves to its leftmost entry. Entries are parsed only
// when reached, so whatever a client prepends cannot change the result.
// When a trusted proxy's entry is malformed (unparsable, obfuscated,
// "unknown", or the chain is over maxHops long), the header is ignored and
// the result is the peer.
func (rv *resolver) resolve(r *http.Request) netip.Addr {
	peer := httpx.PeerIP(r)
	if !peer.IsValid() || len(rv.trusted) == 0 || !rv.isTrusted(peer) {
		return peer
	}
	var entries []string
	if rv.forwarded {
		// Split each header line on its own, so that a broken line a
		// client sent cannot swallow the lines proxies added after it.
		for _, line := range r.Header.Values(HeaderForwarded) {
			els, ok := splitQuoted(line, ',')
			if !ok {
				els = []string{"\x00"} // malformed: fails if reached
			}
			entries = append(entries, els...)
		}
	} else {
		entries = strings.Split(strings.Join(r.Header.Values(HeaderXFF), ","), ",")
	}
	if len(entries) == 0 || len(entries) == 1 && strings.TrimSpace(entries[0]) == "" {
		return peer // no header
	}
	var ok bool
	client := peer
	for i, n := len(entries)-1, 0; i >= 0; i, n = i-1, n+1 {
		if n == maxHops {
			return peer
		}
		var hop netip.Addr
		if rv.forwarded {
			hop, ok = forwardedFor(entries[i])
		} else {
			hop, ok = parseHop(strings.TrimSpace(entries[i]))
		}
		if !ok {
			return peer
		}
		client = hop
		if !rv.isTrusted(client) {
			return client
		}
	}
	return client
}

// parseHop parses one address as proxies write it: "192.0.2.1",
// "2001:db8::1", "192.0.2.1:4711" or "[2001:db8::1]:4711". Zoned
// addresses are refused.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// forwardedFor parses the for= address of one RFC 7239
// forwarded-element. ok is false when the element has no for= (or two),
// or a for= that is not an IP address ("unknown", obfuscated
// identifiers), or broken syntax.
func forwardedFor(el string) (netip.Addr, bool) {
	pairs, ok := splitQuoted(el, ';')
	if !ok {
		return netip.Addr{}, false
	}
	var found bool
	var addr netip.Addr
	for _, pair := range pairs {
		name, value, has := strings.Cut(strings.TrimSpace(pair), "=")
		if !has {
			return netip.Addr{}, false
		}
		if !strings.EqualFold(strings.TrimSpace(name), "for") {
			continue
		}
		if found {
			return netip.Addr{}, false
		}
		v, ok := unquote(strings.TrimSpace(value))
		if !ok {
			return netip.Addr{}, false
		}
		if addr, ok = parseHop(v); !ok {
			return netip.Addr{}, false
		}
		found = true
	}
	return addr, found
}

// splitQuoted splits s on sep outside double-quoted strings.
func splitQuoted(s string, sep byte) ([]string, bool) {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == sep && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if inQuote {
		return nil, false
	}
	return append(out, s[start:]), true
}

// unquote removes the quotes of an RFC 7230 quoted-string (token values
// pass unchanged).
func unquote(s string) (string, bool) {
	if !strings.HasPrefix(s, `"`) {
		return s, !strings.Contains(s, `"`)
	}
	if len(s) < 2 || !strings.HasSuffix(s, `"`) {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s)-1 {
				return "", false
			}
			c = s[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// contains reports whether any prefix contains a (unmapped).
func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses CIDRs ("10.0.0.0/8", "2001:db8::/32") and bare
// addresses (a single host). IPv4-mapped IPv6 prefixes are normalised to
// IPv4 so that they match IPv4 clients, and every prefix is masked.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses one CIDR or bare address (see ParsePrefixes).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, &prefixError{s}
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, &prefixError{s}
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	if a.Zone() != "" {
		return netip.Prefix{}, &prefixError{s}
	}
	if a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, &prefixError{s}
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked(), nil
}

type prefixError struct{ s string }

// Error names the entry and shows the accepted forms.
func (e *prefixError) Error() string {
	return "invalid address or CIDR " + quoteShort(e.s) + ": want e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32"
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
