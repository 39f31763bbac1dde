package appliance

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// The caller policy: the called AE must be ours; the calling AE and source
// address must be an allowed modality (or a destination sending a Storage
// Commitment report). Unknown callers are refused and remembered (the
// latest few, callers.go), so the technician can approve them with one action.

func addrOf(remote net.Addr) netip.Addr {
	if ta, ok := remote.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Admit implements dimse.Policy.
func (a *Appliance) Admit(rq *dimse.Associate, remote net.Addr) *dimse.Rejection {
	cfg := a.Config()
	ip := addrOf(remote)
	if rq.CalledAE != cfg.AETitle {
		attrs := map[string]string{"calling_ae": rq.CallingAE, "called_ae": rq.CalledAE, "address": ip.String()}
		msg := fmt.Sprintf("%s (%s) called AE title %q; this box is %q", rq.CallingAE, ip, rq.CalledAE, cfg.AETitle)
		a.refusalEvents(a.callers.wrongCalled(msg, attrs, time.Now()))
		return dimse.RejectCalledAE
	}
	if cfg.Allowed(rq.CallingAE, ip) {
		return nil
	}
	// The box calling itself with its own AE title: its own probe
	// (probe.go), the update guard's C-ECHO after an update.
	if rq.CallingAE == cfg.AETitle && a.fromSelf(ip) {
		return nil
	}
	if cfg.Learning {
		if a.callers.learned(rq.CallingAE, ip, time.Now()) {
			a.event(store.KindAssociation, store.Info, fmt.Sprintf("learning: accepted new caller %s (%s)", rq.CallingAE, ip),
				map[string]string{"calling_ae": rq.CallingAE, "address": ip.String()})
		}
		return nil
	}
	a.refusalEvents(a.callers.refused(rq.CallingAE, ip, time.Now()))
	return dimse.RejectCallingAE
}

// Negotiate implements dimse.Policy: every storage SOP class in the
// transfer syntax the sender prefers (its bytes are kept as they are), plus
// Verification and Storage Commitment.
func (a *Appliance) Negotiate(_ *dimse.Associate, pc dimse.PresentationContext) (byte, string) {
	switch {
	case pc.AbstractSyntax == dimse.VerificationSOPClass, pc.AbstractSyntax == dimse.StorageCommitmentSOPClass,
		dimse.IsStorageSOPClass(pc.AbstractSyntax):
		return dimse.ChooseTransferSyntax(pc, nil)
	}
	return dimse.ResultAbstractSyntaxUnsupported, ""
}

func callerKey(ae string, ip netip.Addr) string { return ae + "|" + ip.String() }

// Callers lists the unknown callers most recently seen (at most
// maxCallers), newest first, and how many others were dropped from the list.
func (a *Appliance) Callers() ([]control.Caller, int) { return a.callers.list() }

// Approve allows a caller (from the address it was seen at, or any address
// when address is empty) and forgets it as unknown.
func (a *Appliance) Approve(ae, address string) error {
	if msg := config.CheckAE(ae); msg != "" {
		return fmt.Errorf("approve: %s", msg)
	}
	err := a.updateConfig(func(c *config.Config) {
		c.Modalities = slices.DeleteFunc(c.Modalities, func(m config.Modality) bool { return m.AETitle == ae && m.Address == address })
		c.Modalities = append(c.Modalities, config.Modality{AETitle: ae, Address: address})
	})
	if err != nil {
		return err
	}
	a.callers.forget(ae, address)
	a.event(store.KindConfig, store.Info, fmt.Sprintf("modality %s (%s) approved", ae, orAny(address)), map[string]string{"calling_ae": ae, "address": address})
	return nil
}

// Deny revokes a modality: its entries (from that address, or from any
// when address is empty) leave the configuration, so its next association
// is refused; an unknown caller of that name is forgotten. Denying a name
// that is neither is an error, as a typo would otherwise look done.
func (a *Appliance) Deny(ae, address string) error {
	match := func(title, addr string) bool { return title == ae && (address == "" || addr == address) }
	revoke := slices.ContainsFunc(a.fileConfig().Modalities, func(m config.Modality) bool { return match(m.AETitle, m.Address) })
	listed, _ := a.Callers()
	seen := slices.ContainsFunc(listed, func(c control.Caller) bool { return match(c.AETitle, c.Address) })
	if !revoke && !seen {
		return fmt.Errorf("deny: %s (%s) is neither an allowed modality nor a caller seen", ae, orAny(address))
	}
	if revoke {
		err := a.updateConfig(func(c *config.Config) {
			c.Modalities = slices.DeleteFunc(c.Modalities, func(m config.Modality) bool { return match(m.AETitle, m.Address) })
		})
		if err != nil {
			return fmt.Errorf("deny %s: %w", ae, err)
		}
	}
	a.callers.forget(ae, address)
	cfg := a.Config()
	msg := fmt.Sprintf("caller %s (%s) denied", ae, orAny(address))
	switch ip, err := netip.ParseAddr(address); {
	case revoke && err == nil && cfg.Allowed(ae, ip):
		msg = fmt.Sprintf("modality %s (%s) revoked, but another entry still allows it from there", ae, address)
	case revoke && cfg.Learning:
		msg = fmt.Sprintf("modality %s (%s) revoked; learning is on, so it is accepted again on its next association", ae, orAny(address))
	case revoke:
		msg = fmt.Sprintf("modality %s (%s) revoked: its next association is refused", ae, orAny(address))
	}
	a.event(store.KindConfig, store.Info, msg, map[string]string{"calling_ae": ae, "address": address})
	return nil
}

func orAny(address string) string {
	if address == "" {
		return "any address"
	}
	return address
}
