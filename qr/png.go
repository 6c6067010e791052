package qr

import (
	"fmt"

	qrcode "github.com/skip2/go-qrcode"
)

// DefaultPNGSize is the default image width in pixels: at about 200 characters a token needs a
// version 10 symbol (57 modules plus a 4-module quiet zone), so 512 px gives each module 7 px,
// enough for a handheld scanner to read from a phone screen or a printed card.
const DefaultPNGSize = 512

// PNG renders token as a QR code PNG of size×size pixels with medium error correction (15% of
// the symbol can be damaged: a scuffed card still scans).
func PNG(token string, size int) ([]byte, error) {
	if size <= 0 {
		size = DefaultPNGSize
	}
	b, err := qrcode.Encode(token, qrcode.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("render qr: %w", err)
	}
	return b, nil
}
