package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/dimse"
)

// Explain turns a failure to reach dest into a sentence a technician can
// act on; the technical cause follows in brackets.
func Explain(dest config.Destination, err error) string {
	where := fmt.Sprintf("%s (%s at %s)", dest.Name, dest.AETitle, dest.Addr())
	var rj *dimse.Rejection
	var ab *dimse.AbortError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &rj) && *rj == *dimse.RejectCalledAE:
		return fmt.Sprintf("%s refuses the called AE title %s: check the AE title set for it here [%v]", where, dest.AETitle, err)
	case errors.As(err, &rj) && *rj == *dimse.RejectCallingAE:
		return fmt.Sprintf("%s does not know this box: register our AE title there [%v]", where, err)
	case errors.As(err, &rj) && rj.Result == 2:
		return fmt.Sprintf("%s is busy and refused the association for now [%v]", where, err)
	case errors.As(err, &rj):
		return fmt.Sprintf("%s refused the association [%v]", where, err)
	case errors.As(err, &ab) && !ab.Local:
		return fmt.Sprintf("%s aborted the association [%v]", where, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing answers at %s: is the PACS running, is the port right? [%v]", where, err)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("the name %s cannot be resolved: check the destination's host [%v]", dest.Host, err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("no route to %s: check the network and the tunnel [%v]", where, err)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from %s in time: is the address right, is the tunnel up? [%v]", where, err)
	}
	return fmt.Sprintf("%s: %v", where, err)
}
