package vpn

import (
	"fmt"
	"strings"

	"rsc.io/qr"
)

// qrQuiet is the light margin around the code, in modules (the standard
// asks for 4).
const qrQuiet = 4

// QR renders text (a public key, never a secret one) as a QR code in
// terminal text: two modules per character cell with Unicode half blocks,
// light modules drawn, dark ones left blank, for a light-on-dark terminal
// such as the Linux console. Each line ends with a newline.
func QR(text string) (string, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", fmt.Errorf("QR code: %w", err)
	}
	n := code.Size + 2*qrQuiet
	light := func(x, y int) bool {
		x, y = x-qrQuiet, y-qrQuiet
		return x < 0 || y < 0 || x >= code.Size || y >= code.Size || !code.Black(x, y)
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			top, bottom := light(x, y), y+1 < n && light(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}
