package httpcache

// Content codings a cache can tell apart in Accept-Encoding, in the order
// AppendAcceptedCodings lists them.
var knownCodings = [...]string{"br", "deflate", "gzip", "zstd"}

// AppendAcceptedCodings appends to dst the codings among br, deflate, gzip
// and zstd that the Accept-Encoding field lines accept (RFC 9110 §12.5.3),
// in that order, separated by ", ": a coding listed with a non-zero qvalue,
// or not listed while "*" has one. x-gzip counts as gzip. No field, or
// nothing acceptable, appends nothing (identity).
//
// Browsers spell Accept-Encoding in dozens of ways; keyed raw, a URL with
// Vary: Accept-Encoding splits into as many variants. Keyed by this set
// there are at most sixteen, and a fill that asks the origin for exactly
// this set gets a response every request with the same set accepts.
func AppendAcceptedCodings(dst []byte, lines [][]byte) []byte {
	const (
		unset = iota
		no
		yes
	)
	var state [len(knownCodings)]uint8
	star := unset
	for _, line := range lines {
		EachListItem(line, func(item []byte) {
			coding, ok := codingAccepted(item)
			val := uint8(no)
			if ok {
				val = yes
			}
			if FieldIs(coding, "*") {
				star = int(val)
				return
			}
			if FieldIs(coding, "x-gzip") {
				coding = coding[2:]
			}
			for i, k := range knownCodings {
				// The last mention of a coding wins, as for repeated keys.
				if FieldIs(coding, k) {
					state[i] = val
				}
			}
		})
	}
	first := true
	for i, k := range knownCodings {
		if state[i] == yes || (state[i] == unset && star == yes) {
			if !first {
				dst = append(dst, ',', ' ')
			}
			dst = append(dst, k...)
			first = false
		}
	}
	return dst
}

// codingAccepted splits one Accept-Encoding item, "coding[;q=qvalue]", into
// its coding and whether the qvalue is above zero (absent: 1). A malformed
// qvalue counts as zero: when in doubt, do not send that coding.
func codingAccepted(item []byte) (coding []byte, ok bool) {
	coding, params := item, []byte(nil)
	for i, c := range item {
		if c == ';' {
			coding, params = trimSpace(item[:i]), item[i+1:]
			break
		}
	}
	for len(params) > 0 {
		var p []byte
		p, params = cutByte(params, ';')
		name, val, _ := splitDirective(p)
		if FieldIs(name, "q") {
			return coding, qAboveZero(val)
		}
	}
	return coding, true
}

func cutByte(b []byte, sep byte) (before, after []byte) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// qAboveZero reads a qvalue (RFC 9110 §12.4.2: "0" ["." 0-3 digits] or
// "1" ["." 0-3 zeros]) and reports whether it is above zero.
func qAboveZero(v []byte) bool {
	if len(v) == 0 || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return false
	}
	if len(v) > 1 && v[1] != '.' {
		return false
	}
	above := v[0] == '1'
	for _, c := range v[min(len(v), 2):] {
		if c < '0' || c > '9' {
			return false
		}
		if v[0] == '1' && c != '0' {
			return false
		}
		above = above || c != '0'
	}
	return above
}
