package agent

import (
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// writeText writes one metric family in the text exposition format, for
// regenerating the golden file (UPDATE_GOLDEN=1 go test -run Golden).
func writeText(w io.Writer, mf *dto.MetricFamily) (int, error) {
	return expfmt.MetricFamilyToText(w, mf)
}
