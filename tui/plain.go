package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/relais/relais/appliance/control"
)

// The console shows every failure as a sentence that says what to do, with
// the technical cause apart (shown dimmed, or in a detail view). This is the
// one place that turns errors into those sentences.
//
// Errors raised here (the control socket, the console's own parsing) are
// matched by type. Errors the daemon reports come as text: it explains the
// DICOM network ones where their types are known (appliance/forward.Explain)
// and appends the cause in brackets (control.WithCause); Go's own parse
// messages that reach the console as text are matched by their wording.

// plain turns err into a sentence for people and its technical cause ("" when
// the sentence says it all).
func plain(err error) (sentence, cause string) {
	if err == nil {
		return "", ""
	}
	var ce *control.Error
	var num *strconv.NumError
	switch {
	case errors.As(err, &ce) && len(ce.Fields) > 0:
		// Field errors are already sentences, field by field: keep them.
		var b strings.Builder
		b.WriteString(ce.Message)
		for _, f := range ce.Fields {
			fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Msg)
		}
		return b.String(), ""
	case errors.As(err, &ce):
		return plainText(ce.Message)
	case notAnswering(err):
		return daemonDown(err), err.Error()
	case errors.As(err, &num):
		return fmt.Sprintf("%q is not a number: a whole number is needed", num.Num), err.Error()
	}
	return plainText(err.Error())
}

// daemonDown says why relaisd does not answer on its control socket.
func daemonDown(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return "relaisd is not running (its control socket is closed): the console retries on its own; restart the box if it stays"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "relaisd did not answer in time (it may be busy): the console retries on its own"
	}
	return "relaisd does not answer: the console retries on its own; restart the box if it stays"
}

// parseWords are Go's parse messages that reach the console as text (from
// the daemon), by a word they contain, and what they mean.
var parseWords = []struct{ word, sentence string }{
	{"netip.ParsePrefix(", "an address with its network is needed, for example 10.8.0.2/24"},
	{"ParseAddr(", "an IP address is needed, for example 192.168.1.20"},
	{"not 32 bytes of base64", "a WireGuard key is needed: 44 characters of base64 ending in ="},
	{"missing port in address", "host:port is needed, for example vpn.example.org:51820"},
	{"invalid port", "a port is a number from 1 to 65535"},
	{"strconv.Atoi: parsing", "a whole number is needed"},
}

// plainText is plain for an error that came as text.
func plainText(text string) (sentence, cause string) {
	if sentence, cause = control.SplitCause(text); cause != "" {
		return sentence, cause
	}
	for _, p := range parseWords {
		i := strings.Index(text, p.word)
		if i < 0 {
			continue
		}
		// Keep what the text says it was parsing: "tunnel address: …".
		if what := strings.TrimRight(text[:i], ": "); what != "" {
			return what + ": " + p.sentence, text
		}
		return p.sentence, text
	}
	return text, ""
}

// describe is plain's sentence alone.
func describe(err error) string {
	s, _ := plain(err)
	return s
}

// failure is a notice for a failure: what failed, the sentence, and the
// cause dimmed on a line of its own.
func (m *Model) failure(what string, err error) string {
	sentence, cause := plain(err)
	s := m.st.alarm.Render(what) + sentence
	if cause != "" {
		s += "\n" + m.st.dim.Render(cause)
	}
	return s
}
