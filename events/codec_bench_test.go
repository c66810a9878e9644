package events

import "testing"

func BenchmarkDecode(b *testing.B) {
	e := sample(KeyIssued)
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

func BenchmarkEncode(b *testing.B) {
	e := sample(KeyIssued)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSmall(b *testing.B) {
	e := sample(KeyUpdated)
	e.Data = KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}}
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

func BenchmarkHashOf(b *testing.B) {
	e := sample(KeyUpdated)
	data, _ := Encode(&e)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		HashOf(data)
	}
}
