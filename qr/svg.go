package qr

import (
	"fmt"
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// SVG is a QR code drawn as SVG: a square of Size modules (the 4-module quiet zone included)
// and one path of the dark modules, each horizontal run of them one rectangle. A page puts it
// in an <svg viewBox="0 0 Size Size"> with a white background; the browser scales it with crisp
// edges, so it is sharp at any size and costs a few kilobytes.
type SVG struct {
	Size int
	Path string
}

// NewSVG encodes token as PNG does (medium error correction) and returns it as SVG parts.
func NewSVG(token string) (SVG, error) {
	q, err := qrcode.New(token, qrcode.Medium)
	if err != nil {
		return SVG{}, fmt.Errorf("render qr: %w", err)
	}
	return svgOf(q.Bitmap()), nil
}

// svgOf draws a QR bitmap (bitmap[y][x] true for a dark module) as one SVG path.
func svgOf(bitmap [][]bool) SVG {
	var b strings.Builder
	for y, row := range bitmap {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			// M x y h run v 1 h -run z: a run×1 rectangle.
			b.WriteString("M" + strconv.Itoa(x) + " " + strconv.Itoa(y) + "h" + strconv.Itoa(run) + "v1h-" + strconv.Itoa(run) + "z")
			x += run
		}
	}
	return SVG{Size: len(bitmap), Path: b.String()}
}
