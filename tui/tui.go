// Package tui is Relais' console: a bubbletea program that shows the box
// and sets it up, for the technician at the box's screen (a terminal or a
// Linux virtual console) and for the regional team over SSH. It is a client
// of relaisd's control API (appliance/control) and of nothing else.
package tui

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

// Options configure a console.
type Options struct {
	// Socket is relaisd's control socket.
	Socket string
	// Settings edits the tunnel and the network; nil uses the control
	// socket's /v1/tunnel and /v1/network.
	Settings Settings
	// Timeout bounds each call to the daemon (default 2 s).
	Timeout time.Duration
	// Poll is how often the screen is refreshed (default 1 s).
	Poll time.Duration
	// Where is shown in the header: "ssh", "tty2"...
	Where string
}

// screens, in the order of their keys 1 to 5.
const (
	dashboardScreen = iota
	studiesScreen
	eventsScreen
	setupScreen
	actionsScreen
	screenCount
)

var screenNames = [screenCount]string{"Dashboard", "Studies", "Events", "Setup", "Actions"}

// Model is the console. Use it with tea.NewProgram, or call Run.
type Model struct {
	opts     Options
	api      *control.Client
	settings Settings
	st       styles
	width    int
	height   int
	screen   int

	// What the daemon said last, and whether it is answering.
	status     control.Status
	haveStatus bool
	down       error     // last failure to reach the daemon, nil when answering
	downSince  time.Time // when it stopped answering
	busy       map[string]bool
	cfg        config.Config
	haveConfig bool
	offered    bool // the first-start wizard was offered

	studies studiesView
	events  eventsView
	setup   setupView
	actions actionsView
	rates   rates

	prompt *prompt
	form   *form
	page   *page // details or keys over the screen, until esc

	alarmCursor int    // the dashboard's alarm chosen for details
	notice      string // the last action's outcome
}

// prompt is a yes/no question; esc leaves it unanswered.
type prompt struct {
	question string
	yes, no  tea.Cmd
}

// form is a huh form in progress, and what to do once it is submitted.
type form struct {
	title  string
	f      *huh.Form
	submit func() tea.Cmd
	// paste, if set, sees pasted text before the form does.
	paste func(string) string
}

// New returns a console for opts.
func New(opts Options) *Model {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	api := control.NewClient(opts.Socket)
	if opts.Settings == nil {
		opts.Settings = clientSettings{api}
	}
	return &Model{
		opts:     opts,
		api:      api,
		settings: opts.Settings,
		st:       newStyles(),
		width:    80,
		height:   24,
		busy:     map[string]bool{},
		rates:    rates{},
		setup:    setupView{open: -1},
	}
}

// Run runs a console on in and out until the user quits or ctx ends. env
// is the terminal's environment (TERM decides the colours).
func Run(ctx context.Context, opts Options, in io.Reader, out io.Writer, env []string) error {
	p := tea.NewProgram(New(opts), tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithEnvironment(env))
	_, err := p.Run()
	if err == tea.ErrProgramKilled && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.refresh(), m.fetchConfig(), tick(m.opts.Poll))
}

func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.resize(msg.Width, msg.Height)
		if m.form != nil {
			m.form.f = m.form.f.WithWidth(m.width).WithHeight(m.formHeight())
		}
		return m, nil
	case wizardMsg:
		return m, m.answerWizard(msg)
	case tickMsg:
		return m, tea.Batch(m.refresh(), tick(m.opts.Poll))
	case statusMsg, studiesMsg, eventsMsg, configMsg, timelineMsg, doneMsg, echoMsg, settingsMsg, parkedMsg, keysMsg:
		return m, m.answer(msg)
	case tea.KeyPressMsg:
		if m.prompt != nil {
			return m, m.answerPrompt(msg)
		}
		if m.form == nil {
			return m, m.key(msg)
		}
		if msg.String() == "esc" && m.setup.wizard > 0 {
			m.askStopWizard()
			return m, nil
		}
		if msg.String() == "esc" {
			m.form, m.setup.wizard = nil, 0
			m.notice = "cancelled: nothing was changed"
			return m, nil
		}
	}
	if m.form != nil {
		if p, ok := msg.(tea.PasteMsg); ok && m.form.paste != nil {
			p.Content = m.form.paste(p.Content)
			msg = p
		}
		return m, m.updateForm(msg)
	}
	return m, nil
}

// resize takes a new terminal size; serial lines report 0×0.
func (m *Model) resize(w, h int) {
	if w <= 0 || h <= 0 {
		w, h = 80, 24
	}
	m.width, m.height = w, h
}

// bodyHeight is what is left for a screen under the header and the two
// status lines and above the footer.
func (m *Model) bodyHeight() int { return max(m.height-4, 1) }

// bodyLines is what a screen's body gets: bodyHeight less the notice or
// prompt under it. Lists fit their rows in it, so that the cursor's is shown.
func (m *Model) bodyLines() int {
	lines := m.bodyHeight()
	if notice := m.noticeView(); notice != "" {
		lines -= strings.Count(notice, "\n") + 1
	}
	return max(lines, 1)
}

func (m *Model) updateForm(msg tea.Msg) tea.Cmd {
	f := m.form
	model, cmd := f.f.Update(msg)
	if hf, ok := model.(*huh.Form); ok {
		f.f = hf
	}
	switch f.f.State {
	case huh.StateCompleted:
		m.form = nil
		return tea.Batch(cmd, f.submit())
	case huh.StateAborted:
		m.form, m.setup.wizard = nil, 0
		m.notice = "cancelled: nothing was changed"
	}
	return cmd
}

// openForm shows a form; submit runs once it is completed.
func (m *Model) openForm(title string, groups []*huh.Group, submit func() tea.Cmd) tea.Cmd {
	if m.setup.wizard > 0 {
		title = m.wizardTitle(title)
	}
	f := huh.NewForm(groups...).WithTheme(huh.ThemeFunc(huh.ThemeBase16)).WithShowHelp(true).
		WithWidth(m.width).WithHeight(m.formHeight())
	m.form = &form{title: title, f: f, submit: submit}
	m.notice = ""
	return f.Init()
}

func (m *Model) ask(question string, yes, no tea.Cmd) {
	m.prompt = &prompt{question: question, yes: yes, no: no}
}

func (m *Model) answerPrompt(k tea.KeyPressMsg) tea.Cmd {
	p := m.prompt
	switch k.String() {
	case "y", "Y", "enter":
		m.prompt = nil
		return p.yes
	case "n", "N":
		m.prompt = nil
		return p.no
	case "esc", "q": // later: as no
		m.prompt = nil
		return p.no
	}
	return nil
}

// key handles a key outside forms and prompts.
func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if m.screen == eventsScreen && m.events.typing && s != "ctrl+c" {
		return m.eventsKey(k) // every key is text then
	}
	if m.page != nil && slices.Contains(pageKeys, s) {
		m.page = nil
		return nil
	}
	switch s {
	case "ctrl+c", "q":
		return tea.Quit
	case "?", "h":
		_, help := m.body()
		m.page = m.keysPage(help)
		return nil
	case "1", "2", "3", "4", "5":
		return m.show(int(s[0] - '1'))
	case "f1", "f2", "f3", "f4", "f5":
		return m.show(int(s[1] - '1'))
	case "tab":
		return m.show((m.screen + 1) % screenCount)
	case "shift+tab":
		return m.show((m.screen + screenCount - 1) % screenCount)
	}
	if m.page != nil {
		return nil
	}
	switch m.screen {
	case dashboardScreen:
		return m.dashboardKey(s)
	case studiesScreen:
		return m.studiesKey(s)
	case eventsScreen:
		return m.eventsKey(k)
	case setupScreen:
		return m.setupKey(s)
	case actionsScreen:
		return m.actionsKey(s)
	}
	return nil
}

// show switches screens and fetches what the new one needs at once.
func (m *Model) show(screen int) tea.Cmd {
	m.screen = screen
	m.notice, m.page = "", nil
	return m.refresh()
}

func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "Relais console"
	return v
}

// render draws the whole screen: header, health line, body, footer.
func (m *Model) render() string {
	var b strings.Builder
	b.WriteString(fit(m.header(), m.width, 1) + "\n")
	b.WriteString(fit(m.healthLine(), m.width, 1) + "\n")
	body, help := m.body()
	notice := m.noticeView()
	b.WriteString(fit(body, m.width, m.bodyLines()) + "\n")
	if notice != "" {
		b.WriteString(fit(notice, m.width, strings.Count(notice, "\n")+1) + "\n")
	}
	b.WriteString(fit(m.st.dim.Render(footer(help, m.width)), m.width, 1) + "\n")
	return fit(b.String(), m.width, m.height)
}

func (m *Model) header() string {
	var tabs []string
	for i, n := range screenNames {
		label := fmt.Sprintf("%d %s", i+1, n)
		if i == m.screen {
			tabs = append(tabs, m.st.activeTab.Render(" "+label+" "))
		} else {
			tabs = append(tabs, m.st.tab.Render(" "+label+" "))
		}
	}
	name := "Relais"
	if m.haveStatus {
		name = fmt.Sprintf("Relais %s:%d", m.status.AETitle, m.status.Port)
	}
	if m.opts.Where != "" {
		name += " (" + m.opts.Where + ")"
	}
	return m.st.title.Render(name) + " " + strings.Join(tabs, "")
}

// body is the current screen (or the form or prompt over it) and its help.
func (m *Model) body() (string, string) {
	if m.form != nil {
		return m.st.title.Render(m.form.title) + "\n" + m.form.f.View(), "esc cancel · tab/enter next field · shift+tab back"
	}
	if m.page != nil {
		return m.pageView()
	}
	if !m.haveStatus && m.screen != setupScreen {
		return "waiting for relaisd…", "q quit"
	}
	switch m.screen {
	case dashboardScreen:
		return m.dashboardView(), "↑/↓ choose alarm · enter details · a allow caller · r retry · e echo · p pause/resume · s setup · q quit"
	case studiesScreen:
		return m.studiesView()
	case eventsScreen:
		return m.eventsView()
	case setupScreen:
		return m.setupView()
	default:
		return m.actionsView()
	}
}

func (m *Model) noticeView() string {
	if m.prompt != nil {
		return m.st.key.Render(m.prompt.question) + "  " + m.st.dim.Render("y yes · n no · esc later")
	}
	// Wrapped, not cut: a failure's sentence is read in full.
	return ansi.Wrap(m.notice, m.width, " ")
}

// formHeight leaves room for the form's title and the notice line.
func (m *Model) formHeight() int { return max(m.bodyHeight()-3, 5) }
