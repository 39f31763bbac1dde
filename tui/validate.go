package tui

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/vpn"
)

// Field checks for the Setup forms: each returns a sentence a technician
// can act on, or nil.

func checkAE(s string) error {
	if msg := config.CheckAE(s); msg != "" {
		return errors.New(msg)
	}
	return nil
}

func checkPort(s string) error {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q is not a port: a number from 1 to 65535", s)
	}
	return nil
}

// optional accepts an empty value, else checks it.
func optional(check func(string) error) func(string) error {
	return func(s string) error {
		if strings.TrimSpace(s) == "" {
			return nil
		}
		return check(s)
	}
}

func checkAllowed(s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if _, err := config.ParseAllowed(strings.TrimSpace(s)); err != nil {
		return fmt.Errorf("%q is neither an address (10.1.2.3) nor a network (10.1.2.0/24)", s)
	}
	return nil
}

func checkHost(s string) error {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return errors.New("a host name or address is required")
	case net.ParseIP(s) == nil && strings.ContainsAny(s, " /:"):
		return fmt.Errorf("%q is not a host name or address", s)
	}
	return nil
}

// checkName checks a destination's name, unique among others.
func checkName(others []string) func(string) error {
	return func(s string) error {
		switch {
		case strings.TrimSpace(s) == "":
			return errors.New("a name is required, for example center")
		case strings.ContainsAny(s, "/ \t"):
			return errors.New("a name has no spaces or slashes")
		}
		for _, o := range others {
			if o == s {
				return fmt.Errorf("%q is already used", s)
			}
		}
		return nil
	}
}

// checkInt accepts whole numbers from lo to hi.
func checkInt(lo, hi int, what string) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%s: a whole number from %d to %d", what, lo, hi)
		}
		return nil
	}
}

func checkKey(s string) error {
	if _, err := vpn.ParseKey(strings.TrimSpace(s)); err != nil {
		return errors.New("not a WireGuard public key: 44 characters of base64 ending in =")
	}
	return nil
}

func checkEndpoint(s string) error {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil || host == "" {
		return fmt.Errorf("%q: want host:port, for example vpn.example.org:51820", s)
	}
	return checkPort(port)
}

func checkPrefix(s string) error {
	if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
		return fmt.Errorf("%q: want an address with its network, for example 10.8.0.2/24", s)
	}
	return nil
}

func checkAddr(s string) error {
	if _, err := netip.ParseAddr(strings.TrimSpace(s)); err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	return nil
}

// checkList applies check to each comma-separated item; empty is refused.
func checkList(check func(string) error) func(string) error {
	return func(s string) error {
		items := splitList(s)
		if len(items) == 0 {
			return errors.New("at least one is required")
		}
		for _, it := range items {
			if err := check(it); err != nil {
				return err
			}
		}
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, it := range strings.Split(s, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// atoi reads a number already validated.
func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
