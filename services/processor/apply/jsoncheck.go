package apply

import (
	"errors"
	"unicode/utf8"
)

// checkJSON accepts exactly the JSON texts Postgres stores as jsonb: what
// encoding/json.Valid accepts (RFC 8259, at most 10,000 levels deep), in
// valid UTF-8, without \u0000 or unpaired UTF-16 surrogates. When the text
// is an object it appends its members to members, as topLevel would. One
// pass over the bytes and no allocation for records nested under 64 levels:
// it runs on every record, and json.Valid plus a jsonb-safety scan plus the
// member scan took a sixth of the processor's CPU. FuzzCheckJSON holds it to
// json.Valid and to topLevel.
func checkJSON(b []byte, members []field) ([]field, error) {
	var buf [64]byte
	stack := buf[:0]               // '{' or '[' per open container
	var keyAt, keyClose, valAt int // the current top-level member's key and value
	key := func(i int) (int, error) {
		next, closeQuote, err := checkKey(b, i)
		if len(stack) == 1 {
			keyAt, keyClose, valAt = i, closeQuote, next
		}
		return next, err
	}
	i := skipWS(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return nil, errJSONEnd
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxJSONDepth {
				return nil, errJSONDepth
			}
			stack = append(stack, c)
			i = skipWS(b, i+1)
			if i < len(b) && b[i] == closer(c) {
				stack, i = stack[:len(stack)-1], i+1
				break
			}
			if c == '{' {
				var err error
				if i, err = key(i); err != nil {
					return nil, err
				}
			}
			continue
		case c == '"':
			var err error
			if i, err = checkString(b, i); err != nil {
				return nil, err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			var ok bool
			if i, ok = checkNumber(b, i); !ok {
				return nil, errJSONSyntax
			}
		case c == 't':
			if !hasLiteral(b, i, "true") {
				return nil, errJSONSyntax
			}
			i += 4
		case c == 'f':
			if !hasLiteral(b, i, "false") {
				return nil, errJSONSyntax
			}
			i += 5
		case c == 'n':
			if !hasLiteral(b, i, "null") {
				return nil, errJSONSyntax
			}
			i += 4
		default:
			return nil, errJSONSyntax
		}
		// After a value: close containers, or move to the next member.
		for {
			if len(stack) == 1 && stack[0] == '{' {
				// The value that just ended is a top-level member's.
				members = append(members, field{key: b[keyAt+1 : keyClose], val: b[valAt:i]})
			}
			i = skipWS(b, i)
			if len(stack) == 0 {
				if i != len(b) {
					return nil, errJSONSyntax
				}
				return members, nil
			}
			if i >= len(b) {
				return nil, errJSONEnd
			}
			top := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipWS(b, i+1)
				if top == '{' {
					var err error
					if i, err = key(i); err != nil {
						return nil, err
					}
				}
				break
			}
			if b[i] == closer(top) {
				stack, i = stack[:len(stack)-1], i+1
				continue // the closed container was a value: of a member, maybe
			}
			return nil, errJSONSyntax
		}
	}
}

const maxJSONDepth = 10000 // encoding/json's limit

// closer is the bracket closing open ('{' or '[').
func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

var (
	errJSONSyntax = errors.New("record is not valid JSON")
	errJSONEnd    = errors.New("record is not valid JSON: unexpected end")
	errJSONDepth  = errors.New("record is not valid JSON: nested more than 10000 levels")
	errJSONUTF8   = errors.New("record is not valid UTF-8, which Postgres jsonb cannot store")
	errJSONNUL    = errors.New(`record contains \u0000, which Postgres jsonb cannot store`)
	errJSONLow    = errors.New("record contains an unpaired UTF-16 low surrogate")
	errJSONHigh   = errors.New("record contains an unpaired UTF-16 high surrogate")
)

// checkKey checks `"key" :` at i (i past any white space) and returns the
// index after the colon and its white space, and the index of the key's
// closing quote.
func checkKey(b []byte, i int) (next, closeQuote int, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, errJSONSyntax
	}
	end, err := checkString(b, i)
	if err != nil {
		return 0, 0, err
	}
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		return 0, 0, errJSONSyntax
	}
	return skipWS(b, i+1), end - 1, nil
}

// checkString checks the string opening at i and returns the index after
// its closing quote.
func checkString(b []byte, i int) (int, error) {
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return 0, errJSONSyntax
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errJSONEnd
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, errJSONEnd
				}
				r, ok := hex4(b[i+2 : i+6])
				switch {
				case !ok:
					return 0, errJSONSyntax
				case r == 0:
					return 0, errJSONNUL
				case r >= 0xDC00 && r <= 0xDFFF:
					return 0, errJSONLow
				case r >= 0xD800 && r <= 0xDBFF:
					if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
						return 0, errJSONHigh
					}
					if lo, ok := hex4(b[i+8 : i+12]); !ok || lo < 0xDC00 || lo > 0xDFFF {
						return 0, errJSONHigh
					}
					i += 12
				default:
					i += 6
				}
			default:
				return 0, errJSONSyntax
			}
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return 0, errJSONUTF8
			}
			i += n
		}
	}
	return 0, errJSONEnd
}

// checkNumber checks the number starting at i and returns the index after
// it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func checkNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}
