package dump

import (
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

func TestSubset(t *testing.T) {
	const tag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}`
	for _, c := range []struct {
		in       string
		elements []string
		want     string
	}{
		{`{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"valueQuantity":{"value":1}}`, []string{"status", "code"},
			`{"status":"final","code":{"text":"x"},"meta":{"tag":[` + tag + `]}}`},
		{`{"status":"final","valueQuantity":{"value":1},"valueSet":1}`, []string{"value[x]"},
			`{"valueQuantity":{"value":1},"valueSet":1,"meta":{"tag":[` + tag + `]}}`},
		{`{"status":"final","statusReason":{"text":"x"},"_status":{"extension":[]},"classHistory":[]}`, []string{"status", "class"},
			`{"status":"final","_status":{"extension":[]},"meta":{"tag":[` + tag + `]}}`},
		{`{"_valueString":{"id":"e"},"valueString":"v"}`, []string{"value[x]"},
			`{"_valueString":{"id":"e"},"valueString":"v","meta":{"tag":[` + tag + `]}}`},
		{`{"meta":{"tag":{"code":"x"}},"a":1}`, []string{"a"},
			`{"a":1,"meta":{"tag":[` + tag + `]}}`},
		{`{"status":"final","value":{"Quantity":{"value":1}}}`, []string{"value[x]"},
			`{"value":{"Quantity":{"value":1}},"meta":{"tag":[` + tag + `]}}`},
		{`{"meta":{"profile":["p"]},"status":"final"}`, []string{"status"},
			`{"status":"final","meta":{"profile":["p"],"tag":[` + tag + `]}}`},
		{`{"meta":{"tag":[{"code":"a"}]},"b":1}`, []string{"x"},
			`{"meta":{"tag":[{"code":"a"},` + tag + `]}}`},
		{`{"meta":{"tag":[]}}`, []string{"x"},
			`{"meta":{"tag":[` + tag + `]}}`},
		{`{"id":"1","resourceType":"Patient","name":[]}`, []string{"gender"},
			`{"id":"1","resourceType":"Patient","meta":{"tag":[` + tag + `]}}`},
	} {
		var ms []ndjson.Member
		got, err := subset(nil, []byte(c.in), c.elements, &ms)
		if err != nil || string(got) != c.want {
			t.Errorf("subset(%s, %q)\n got %s %v\nwant %s", c.in, c.elements, got, err, c.want)
		}
	}
	var ms []ndjson.Member
	if _, err := subset(nil, []byte(`[1]`), []string{"a"}, &ms); err == nil {
		t.Error("an array subset")
	}
}
