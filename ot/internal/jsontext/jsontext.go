// Package jsontext reads and writes JSON strings the way Tandem's op
// formats need: reading refuses what encoding/json silently repairs (lone
// UTF-16 surrogates, invalid UTF-8), and writing matches JavaScript's
// JSON.stringify byte for byte, so that an op re-encoded here equals the
// reference implementation's output.
package jsontext

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ReadString reads the JSON string whose opening quote is data[pos]: its
// value and the offset just past its closing quote. Errors name the byte
// offset they were found at.
func ReadString(data []byte, pos int) (string, int, error) {
	pos++ // opening quote
	start := pos
	// Fast path: no escapes.
	for pos < len(data) {
		c := data[pos]
		if c == '"' {
			raw := data[start:pos]
			if !utf8.Valid(raw) {
				return "", 0, fmt.Errorf("at byte %d: string is not valid UTF-8", start)
			}
			return string(raw), pos + 1, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", 0, fmt.Errorf("at byte %d: control character in string", pos)
		}
		pos++
	}
	var sb strings.Builder
	sb.Write(data[start:pos])
	for {
		if pos >= len(data) {
			return "", 0, fmt.Errorf("at byte %d: unterminated string", pos)
		}
		c := data[pos]
		switch {
		case c == '"':
			s := sb.String()
			if !utf8.ValidString(s) {
				return "", 0, fmt.Errorf("at byte %d: string is not valid UTF-8", start)
			}
			return s, pos + 1, nil
		case c < 0x20:
			return "", 0, fmt.Errorf("at byte %d: control character in string", pos)
		case c != '\\':
			sb.WriteByte(c)
			pos++
			continue
		}
		// An escape.
		if pos+1 >= len(data) {
			return "", 0, fmt.Errorf("at byte %d: unterminated escape", pos)
		}
		esc := pos
		e := data[pos+1]
		pos += 2
		switch e {
		case '"', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, ok := hex4(data, pos)
			if !ok {
				return "", 0, fmt.Errorf("at byte %d: invalid \\u escape", pos)
			}
			pos += 4
			if utf16.IsSurrogate(r) {
				if r >= 0xdc00 {
					return "", 0, fmt.Errorf("at byte %d: lone low surrogate \\u%04x", esc, r)
				}
				if pos+1 >= len(data) || data[pos] != '\\' || data[pos+1] != 'u' {
					return "", 0, fmt.Errorf("at byte %d: lone high surrogate \\u%04x", esc, r)
				}
				r2, ok := hex4(data, pos+2)
				if !ok {
					return "", 0, fmt.Errorf("at byte %d: invalid \\u escape", pos+2)
				}
				pos += 6
				combined := utf16.DecodeRune(r, r2)
				if combined == utf8.RuneError {
					return "", 0, fmt.Errorf("at byte %d: high surrogate \\u%04x followed by \\u%04x", esc, r, r2)
				}
				r = combined
			}
			sb.WriteRune(r)
		default:
			return "", 0, fmt.Errorf("at byte %d: invalid escape \\%c", pos-2, e)
		}
	}
}

func hex4(data []byte, pos int) (rune, bool) {
	if pos+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[pos : pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// AppendString appends s as a JSON string, written as JSON.stringify
// writes it: only '"', '\\' and control characters are escaped, with the
// short escapes where JSON has them. Invalid UTF-8 (which no op holds) is
// written as U+FFFD, so the output is always valid JSON.
func AppendString(b []byte, s string) []byte {
	return append(AppendStringBody(append(b, '"'), s), '"')
}

// AppendStringBody appends s escaped as AppendString does, without the
// quotes: a long string can be written in pieces.
func AppendStringBody(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(s[i:]); r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
			} else {
				i += size
			}
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}
