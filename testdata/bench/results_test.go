package main

import "testing"

// TestBoundIsThePeerOverTheFloorRunByRun: the floors' ratio is taken
// within each run (the machine's mood of that run on both sides), and a run
// missing a floor is left out rather than counted as zero.
func TestBoundIsThePeerOverTheFloorRunByRun(t *testing.T) {
	r := &results{Rows: []*row{
		{Scenario: "Ingest", Case: "ct", Server: nameStorescp, Samples: []sample{{Run: 1, Wall: 0.5}, {Run: 2, Wall: 1}}},
		{Scenario: "Ingest", Case: "ct", Server: diskName, Samples: []sample{{Run: 1, Wall: 0.5}, {Run: 2, Wall: 1}, {Run: 3, Wall: 9}}},
	}}
	floor := func(run int) (float64, bool) {
		a, ok1 := r.wall("Ingest", "ct", nameStorescp, run)
		b, ok2 := r.wall("Ingest", "ct", diskName, run)
		return a + b, ok1 && ok2
	}
	got := r.bound("ct", diskName, floor)
	// Run 1: 0.5 / (0.5 + 0.5); run 2: 1 / (1 + 1); run 3 has no storescp.
	if got.N != 2 || got.Median != 0.5 || got.Min != 0.5 || got.Max != 0.5 {
		t.Fatalf("bound = %+v, want 0.5 from runs 1 and 2", got)
	}
	if got := r.bound("ct", nameOrthanc, floor); got.N != 0 {
		t.Fatalf("bound against a peer that did not run = %+v, want none", got)
	}
}
