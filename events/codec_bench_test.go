package events

import "testing"

func benchDecode(b *testing.B, e Event) {
	data, err := Encode(&e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode: the largest common event, a key.issued with every field.
func BenchmarkDecode(b *testing.B) { benchDecode(b, sample(KeyIssued)) }

// BenchmarkDecodeSmall: a typical key.updated.
func BenchmarkDecodeSmall(b *testing.B) {
	e := sample(KeyUpdated)
	e.Data = KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}}
	benchDecode(b, e)
}

func BenchmarkEncode(b *testing.B) {
	e := sample(KeyIssued)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashOf: the chain hash every read computes.
func BenchmarkHashOf(b *testing.B) {
	e := sample(KeyUpdated)
	data, _ := Encode(&e)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		HashOf(data)
	}
}
