package appliance

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"
)

// Who asked: the control socket is the owner's only, so the peer's uid
// (SO_PEERCRED) names the account behind a console or CLI action; the
// person, when the caller knows, comes with the request.

type peerKey struct{}

// withPeer is the control server's ConnContext: it keeps the peer's uid.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	if uid, ok := peerUID(c); ok {
		return context.WithValue(ctx, peerKey{}, uid)
	}
	return ctx
}

// caller describes who sent a control request, for the audit log.
func caller(ctx context.Context) string {
	uid, ok := ctx.Value(peerKey{}).(uint32)
	if !ok {
		return "console/cli"
	}
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("console/cli as uid %s (%s)", id, u.Username)
	}
	return "console/cli as uid " + id
}
