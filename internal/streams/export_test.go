package streams

// AppendPlainRetryBatch is a version 1 body, as workers before version 2
// wrote them.
func AppendPlainRetryBatch(b []byte, items []RetryItem) []byte {
	return appendRetryItems(append(b, retryBatchPlain), items)
}
