package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
)

// Explain turns a failure to reach dest, calling it as the AE title
// calling, into a sentence a technician can act on; the technical cause
// follows in brackets (control.WithCause). A dest without a name is a
// peer named by its AE title and address only (an echo of any address).
func Explain(dest config.Destination, calling string, err error) string {
	where := fmt.Sprintf("%s at %s", dest.AETitle, dest.Addr())
	if dest.Name != "" {
		where = fmt.Sprintf("%s (%s)", dest.Name, where)
	}
	var rj *dimse.Rejection
	var ab *dimse.AbortError
	var dnsErr *net.DNSError
	var sentence string
	switch {
	case errors.As(err, &rj) && *rj == *dimse.RejectCalledAE:
		sentence = fmt.Sprintf("%s does not answer to the AE title %s: check the AE title set for it here", where, dest.AETitle)
	case errors.As(err, &rj) && *rj == *dimse.RejectCallingAE:
		sentence = fmt.Sprintf("%s does not know this box: the center must register our AE title %s (and our address)", where, calling)
	case errors.As(err, &rj) && rj.Result == 2:
		sentence = fmt.Sprintf("%s is busy and refused the association for now: it is tried again", where)
	case errors.As(err, &rj):
		sentence = fmt.Sprintf("%s refused the association: check both AE titles with the center", where)
	case errors.As(err, &ab) && !ab.Local:
		sentence = fmt.Sprintf("%s aborted the association: see its log", where)
	case errors.Is(err, dimse.ErrNoContextAccepted):
		sentence = fmt.Sprintf("%s accepts none of what was proposed: check that it takes this kind of object", where)
	case errors.Is(err, syscall.ECONNREFUSED):
		sentence = fmt.Sprintf("nothing answers at %s: is the PACS running, is the port right?", where)
	case errors.As(err, &dnsErr):
		sentence = fmt.Sprintf("the name %s cannot be resolved: check the host name and the box's DNS", dest.Host)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		sentence = fmt.Sprintf("no route to %s: check the network and the tunnel", where)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		sentence = fmt.Sprintf("no answer from %s in time: is the address right, is the tunnel up?", where)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		sentence = fmt.Sprintf("%s closed the connection: it may not speak DICOM on this port, or refuse this box's address", where)
	default:
		return fmt.Sprintf("%s: %v", where, err)
	}
	return control.WithCause(sentence, err)
}
