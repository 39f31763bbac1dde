package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/guard"
)

// centerPrefix names a destination's check: "center NAME".
const centerPrefix = "center "

// checkTimeout bounds one check.
const checkTimeout = 15 * time.Second

// checks are relaisd's health checks after an update, from outside: its
// control socket answers, its store is open, its SCP answers C-ECHO on
// loopback, the tunnel is up (if it was on the good image), and each
// destination that answered on the good image answers (required names the
// checks that passed there).
func checks(ctl *control.Client, required []string) []guard.Check {
	cs := []guard.Check{
		{Name: "control", Run: func(ctx context.Context) error { _, err := status(ctx, ctl); return err }},
		{Name: "store", Run: func(ctx context.Context) error {
			st, err := status(ctx, ctl)
			if err == nil && st.StoreError != "" {
				err = errors.New("relaisd's store cannot be read: " + st.StoreError)
			}
			return err
		}},
		{Name: "scp", Run: func(ctx context.Context) error { return echoSCP(ctx, ctl) }},
		{Name: "tunnel", IfHealthyBefore: true, Run: func(ctx context.Context) error { return tunnelUp(ctx, ctl) }},
	}
	for _, n := range required {
		if name, ok := strings.CutPrefix(n, centerPrefix); ok {
			cs = append(cs, centerCheck(ctl, name))
		}
	}
	return cs
}

// baselineChecks are the checks on the good image: every destination
// configured now.
func baselineChecks(ctx context.Context, ctl *control.Client) []guard.Check {
	st, err := status(ctx, ctl)
	if err != nil {
		// relaisd not up yet: the tunnel check fails and is noted as such.
		return checks(ctl, nil)
	}
	var names []string
	for _, d := range st.Destinations {
		names = append(names, centerPrefix+d.Name)
	}
	return checks(ctl, names)
}

func status(ctx context.Context, ctl *control.Client) (control.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	st, err := ctl.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("relaisd's control socket: %w", err)
	}
	return st, nil
}

// echoSCP sends a C-ECHO to relaisd's SCP on loopback, calling with its own
// AE title (which its policy admits from loopback).
func echoSCP(ctx context.Context, ctl *control.Client) error {
	st, err := status(ctx, ctl)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(st.Port))
	s, _, err := dimse.Echo(ctx, addr, dimse.DialParams{CallingAE: st.AETitle, CalledAE: st.AETitle})
	switch {
	case err != nil:
		return fmt.Errorf("C-ECHO to %s on %s: %w", st.AETitle, addr, err)
	case s != dimse.StatusSuccess:
		return fmt.Errorf("C-ECHO to %s on %s: status %s", st.AETitle, addr, s)
	}
	return nil
}

func tunnelUp(ctx context.Context, ctl *control.Client) error {
	st, err := status(ctx, ctl)
	if err != nil {
		return err
	}
	switch t := st.Tunnel; {
	case t.State == "up" || t.State == "not configured":
		return nil
	case t.Error != "":
		return fmt.Errorf("tunnel %s: %s", t.State, t.Error)
	default:
		return fmt.Errorf("tunnel %s, no recent handshake", t.State)
	}
}

func centerCheck(ctl *control.Client, name string) guard.Check {
	return guard.Check{Name: centerPrefix + name, IfHealthyBefore: true, Run: func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		res, err := ctl.Echo(ctx, control.EchoRequest{Destination: name})
		switch {
		case err != nil:
			return fmt.Errorf("C-ECHO to %s: %w", name, err)
		case !res.OK:
			return fmt.Errorf("C-ECHO to %s (%s): %s%s", name, res.Target, res.Status, res.Error)
		}
		return nil
	}}
}
