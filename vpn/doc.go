// Package vpn is the WireGuard tunnel from the box to the regional reading
// center: keys, bring-up in three modes, status, and a dialer for the
// forwarder.
//
// Modes:
//
//   - [ModeKernel] creates a wireguard link with rtnetlink, configures it with
//     wgctrl, then adds the address, brings it up and routes the peer's
//     allowed IPs through it. gokrazy kernels have WireGuard built in.
//   - [ModeUserspace] runs wireguard-go as a library on a TUN device, still
//     configured through wgctrl (over its UAPI socket), with the same
//     addresses and routes. For kernels without WireGuard.
//   - [ModeNetstack] needs no privileges: the tunnel ends in an in-process
//     TCP/IP stack (gVisor), reached only through [Tunnel.DialContext] and
//     [Tunnel.Listen]. For development and tests.
//   - [ModeAuto] tries the kernel, then userspace.
//
// The box's private key is made once by [LoadOrCreateKey] and never leaves
// it: [SecretKey] does not print itself, and [Config.WriteWGQuick] only
// writes it when handed it.
package vpn
