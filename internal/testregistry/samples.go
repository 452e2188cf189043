package testregistry

import "github.com/pullgate/pullgate/internal/samples"

// CleanImage is a small image that scans clean: a text file that says
// "hello <note>" (so tests can tell images apart, and write a rule against
// one), and a layer with an ordinary script and binary.
func CleanImage(note string) Image {
	script, bin := samples.Benign()
	return Image{Layers: [][]byte{
		Layer(File{Path: "etc/motd", Data: []byte("hello " + note + "\n")}),
		Layer(File{Path: "usr/local/bin/start.sh", Mode: 0o755, Data: script},
			File{Path: "usr/local/bin/app", Mode: 0o755, Data: bin}),
	}}
}

// MinerImage is CleanImage with a third layer that carries a stand-in XMRig
// at /usr/bin/kworker: harmless, but with the indicators the rules look for.
func MinerImage(note string) Image {
	img := CleanImage(note)
	img.Layers = append(img.Layers, Layer(File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()}))
	return img
}
