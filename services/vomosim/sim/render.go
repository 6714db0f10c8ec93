package sim

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written JSON appenders: list pages are rendered without reflection so
// the simulator is never the bottleneck of a benchmark.

// WireFormat selects the documented variants of VOMO's JSON.
type WireFormat struct {
	// StringIDs sends ids as JSON strings ("8205") instead of numbers.
	StringIDs bool `json:"string_ids" yaml:"string_ids"`
	// TimeLayout: "" or "offset" (2025-11-19T10:15:00+00:00), "micro"
	// (2021-03-30T15:29:03.000000Z), "plain" (2021-03-29 21:25:37), or "mixed"
	// (a different layout per record).
	TimeLayout string `json:"time_layout" yaml:"time_layout"`
	// IntBools sends booleans as 0/1.
	IntBools bool `json:"int_bools" yaml:"int_bools"`
	// StringMeta sends meta integers as strings.
	StringMeta bool `json:"string_meta" yaml:"string_meta"`
}

var timeLayouts = map[string]string{
	"":       "2006-01-02T15:04:05+00:00",
	"offset": "2006-01-02T15:04:05+00:00",
	"micro":  "2006-01-02T15:04:05.000000Z",
	"plain":  "2006-01-02 15:04:05",
}

var mixedLayouts = [3]string{timeLayouts["offset"], timeLayouts["micro"], timeLayouts["plain"]}

func (wf WireFormat) layout(id int64) string {
	if wf.TimeLayout == "mixed" {
		return mixedLayouts[uint64(id)%3]
	}
	if l, ok := timeLayouts[wf.TimeLayout]; ok {
		return l
	}
	return timeLayouts[""]
}

type enc struct {
	b   []byte
	wf  WireFormat
	lay string
}

func (e *enc) raw(s string) { e.b = append(e.b, s...) }

func (e *enc) key(k string) {
	if n := len(e.b); n > 0 && e.b[n-1] != '{' && e.b[n-1] != '[' {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

func (e *enc) str(k, v string) {
	e.key(k)
	e.b = appendJSONString(e.b, v)
}

func (e *enc) num(k string, v int64) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *enc) id(k string, v int64) {
	e.key(k)
	if e.wf.StringIDs {
		e.b = append(e.b, '"')
		e.b = strconv.AppendInt(e.b, v, 10)
		e.b = append(e.b, '"')
		return
	}
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *enc) boolean(k string, v bool) {
	e.key(k)
	switch {
	case e.wf.IntBools && v:
		e.b = append(e.b, '1')
	case e.wf.IntBools:
		e.b = append(e.b, '0')
	case v:
		e.b = append(e.b, "true"...)
	default:
		e.b = append(e.b, "false"...)
	}
}

func (e *enc) time(k string, unix int64) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = time.Unix(unix, 0).UTC().AppendFormat(e.b, e.lay)
	e.b = append(e.b, '"')
}

func (e *enc) null(k string) {
	e.key(k)
	e.b = append(e.b, "null"...)
}

func (e *enc) open(k string, c byte) {
	if k != "" {
		e.key(k)
	} else if n := len(e.b); n > 0 && e.b[n-1] != '{' && e.b[n-1] != '[' && e.b[n-1] != ':' {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, c)
}

func (e *enc) close(c byte) { e.b = append(e.b, c) }

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as JSON does (without HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
