package tui

import (
	"fmt"

	tea "charm.land/bubbletea/v2"
)

// The first-start wizard walks through Setup in order: this node, a
// modality, the reading center, the tunnel, the network, retention; then it
// echoes the reading center. Each step is the section's own form; "Not now"
// skips it, esc stops the wizard.

var wizardSteps = []string{"this node", "a modality", "the reading center", "the tunnel", "the network", "retention", "echo"}

// wizardMsg starts the wizard.
type wizardMsg struct{}

// offerWizard asks, once, whether to run the wizard on a box that has
// neither modality nor destination.
func (m *Model) offerWizard() tea.Cmd {
	if m.offered || len(m.cfg.Modalities) > 0 || len(m.cfg.Destinations) > 0 {
		return nil
	}
	m.offered = true
	if m.prompt == nil && m.form == nil {
		m.ask("This box is not set up yet. Start the setup wizard?", func() tea.Msg { return wizardMsg{} }, nil)
	}
	return nil
}

func (m *Model) startWizard() tea.Cmd {
	if !m.haveConfig {
		return nil
	}
	m.screen = setupScreen
	m.setup.open = -1
	m.setup.wizard = 0
	return tea.Batch(m.once("settings", m.fetchSettings()), m.nextWizardStep())
}

// nextWizardStep opens the next step's form.
func (m *Model) nextWizardStep() tea.Cmd {
	m.setup.wizard++
	step := m.setup.wizard
	var cmd tea.Cmd
	switch step {
	case 1:
		cmd = m.nodeForm()
	case 2:
		cmd = m.modalityForm(0)
	case 3:
		cmd = m.destinationForm(0)
	case 4:
		cmd = m.tunnelForm()
	case 5:
		cmd = m.networkForm()
	case 6:
		cmd = m.retentionForm()
	default:
		if len(m.cfg.Destinations) == 0 {
			m.setup.wizard = 0
			m.notice = "setup done; no reading center to echo"
			return nil
		}
		return m.echoDestination(m.cfg.Destinations[0].Name)
	}
	if m.form != nil {
		m.form.title = fmt.Sprintf("Setup wizard, step %d of %d: %s", step, len(wizardSteps), m.form.title)
	}
	return cmd
}
