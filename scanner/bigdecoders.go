package scanner

// Decoders with large dictionaries. An xz or LZMA stream names the
// dictionary its decoder allocates (up to 64 MiB for xz -9), however
// little the stream holds: a layer of a few KB can hold hundreds of tiny
// .xz files that each make the decoder allocate 64 MiB. Within a layer,
// what that costs in CPU counts against MaxLayerBytes (chargeDecoder);
// across layers, the scans running at once are bounded by nothing the
// blobs' sizes say (a tiny layer's download ends at once). So at most
// maxBigDecoders walks at a time may hold a decoder of more than
// bigDecoder bytes; a walk that wants one waits for one of them to finish
// the archive that needed it. A walk that holds one may take more inside
// it (nested archives) without waiting, so no walk waits for itself.

const (
	// bigDecoder is the largest decoder allocation taken without a
	// turn: xz's default preset (-6) and every smaller one fit.
	bigDecoder = 8 << 20
	// maxBigDecoders is how many walks may hold big decoders at once.
	maxBigDecoders = 2
)

// takeBigDecoder waits for a turn to set up a decoder of alloc bytes,
// when it is big and the walk holds none yet.
func (w *walker) takeBigDecoder(alloc int64) error {
	if alloc <= bigDecoder || w.bigHeld {
		return nil
	}
	select {
	case w.s.bigDecoders <- struct{}{}:
		w.bigHeld = true
		return nil
	case <-w.st.ctx.Done():
		return w.st.ctx.Err()
	}
}

// releasingBig runs fn, which may set up decoders, and gives back the
// turn fn took, if any, when it returns.
func (w *walker) releasingBig(fn func() error) error {
	held := w.bigHeld
	err := fn()
	if !held && w.bigHeld {
		w.bigHeld = false
		<-w.s.bigDecoders
	}
	return err
}
