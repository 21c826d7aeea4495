package consumer

// SetExpandFault makes d stop expanding a fired retry batch before item i
// of n when fault says so, as a worker killed there would: the batch is
// neither acked nor handed back.
func SetExpandFault(d *Deliverer, fault func(i, n int) bool) { d.expandFault = fault }
