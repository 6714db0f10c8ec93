package apply

import (
	"encoding/binary"
	"sync"
	"time"
)

// copyBuf builds a COPY ... FROM STDIN (FORMAT binary) stream. Writing the
// few column types the batch needs by hand costs a fraction of pgx's
// per-value encoding, which showed up as a tenth of the processor's CPU.
type copyBuf struct{ b []byte }

// pgEpoch is the zero of Postgres timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const textOID = 25

// copyBufs keeps released buffers: a batch's stream is half a megabyte,
// which the runtime would otherwise zero for every batch.
var copyBufs sync.Pool

func newCopyBuf(size int) *copyBuf {
	c, _ := copyBufs.Get().(*copyBuf)
	if c == nil || cap(c.b) < size {
		c = &copyBuf{b: make([]byte, 0, size)}
	}
	c.b = append(c.b[:0], "PGCOPY\n\xff\r\n\x00"...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // header extension length
	return c
}

// release hands the buffer back once the stream has been sent. Not after a
// failed COPY: pgconn may return from one before its reader goroutine stops.
func (c *copyBuf) release() {
	if cap(c.b) <= 16<<20 {
		copyBufs.Put(c)
	}
}

func (c *copyBuf) row(fields int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(fields)) }

func (c *copyBuf) null() { c.b = binary.BigEndian.AppendUint32(c.b, 0xFFFFFFFF) }

func (c *copyBuf) text(s string) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

// bytea writes b, or NULL for nil.
func (c *copyBuf) bytea(b []byte) {
	if b == nil {
		c.null()
		return
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(b)))
	c.b = append(c.b, b...)
}

// jsonb writes the JSON text b (version 1 of the binary format), or NULL for
// nil.
func (c *copyBuf) jsonb(b []byte) {
	if b == nil {
		c.null()
		return
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(b)+1))
	c.b = append(c.b, 1)
	c.b = append(c.b, b...)
}

func (c *copyBuf) int4(v int32) {
	c.b = binary.BigEndian.AppendUint32(c.b, 4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

func (c *copyBuf) boolean(v bool) {
	c.b = binary.BigEndian.AppendUint32(c.b, 1)
	if v {
		c.b = append(c.b, 1)
	} else {
		c.b = append(c.b, 0)
	}
}

// timestamptz writes t in microseconds since 2000-01-01 UTC.
func (c *copyBuf) timestamptz(t time.Time) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(t.Sub(pgEpoch).Microseconds()))
}

// textArray writes a one-dimensional text[] (NULL for nil).
func (c *copyBuf) textArray(ss []string) {
	if ss == nil {
		c.null()
		return
	}
	if len(ss) == 0 {
		c.b = binary.BigEndian.AppendUint32(c.b, 12)
		c.b = binary.BigEndian.AppendUint32(c.b, 0) // dimensions
		c.b = binary.BigEndian.AppendUint32(c.b, 0) // no nulls
		c.b = binary.BigEndian.AppendUint32(c.b, textOID)
		return
	}
	n := 20
	for _, s := range ss {
		n += 4 + len(s)
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(n))
	c.b = binary.BigEndian.AppendUint32(c.b, 1) // dimensions
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // no nulls
	c.b = binary.BigEndian.AppendUint32(c.b, textOID)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(ss)))
	c.b = binary.BigEndian.AppendUint32(c.b, 1) // lower bound
	for _, s := range ss {
		c.text(s)
	}
}

// done appends the trailer and returns the stream.
func (c *copyBuf) done() []byte {
	c.b = binary.BigEndian.AppendUint16(c.b, 0xFFFF)
	return c.b
}
