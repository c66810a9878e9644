package gateway

import "net/http/httputil"

// CopyBuffers lends the gateway's own copy-buffer pool (bufferPool, 32 KiB
// buffers) as an httputil.BufferPool, so that a benchmark's bare proxy
// copies bodies the way the gateway does rather than allocating a buffer
// per request. Put allocates the pointer the pool keeps (24 bytes): the
// one difference from the gateway's own use.
var CopyBuffers httputil.BufferPool = copyBuffers{}

type copyBuffers struct{}

func (copyBuffers) Get() []byte  { return *bufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { bufferPool.Put(&b) }
