//! Where the pipelines meet the server: input relations come in as rows and
//! leave as the records a pipeline asks for; views go out as records and reach
//! the server as rows.
//!
//! Neither end has an operator of its own. Every operator costs something at
//! every logical time (a scheduling, and its share of timely's progress tracking),
//! whether it maps one record or a thousand, and a `map` per input and per view
//! was 60 of the dataflow's 386 operators. So a row becomes a record as the worker
//! hands it to the input's session ([`RowSession`]), and a record becomes a row as
//! the publishing sink reads it off its input ([`View::connect`]).

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::{Data, VecCollection};
use timely::ExchangeData;
use timely::dataflow::Scope;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::Time;
use crate::checkpoint::Checkpoints;
use crate::datum::{Record, RelationSpec, Row};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// One input relation's session, fed rows by the worker.
pub trait RowSession {
    /// Adds `diff` copies of `row` at the session's time. The row was validated
    /// against its relation's spec on the way in, so a row that does not read as
    /// the relation's record is a bug, and panics.
    fn update(&mut self, row: Row, diff: isize);
    fn advance_to(&mut self, time: Time);
    fn flush(&mut self);
}

/// A session whose rows become records of `T`, then what a pipeline reads of them.
struct Projected<T, D: Data> {
    session: InputSession<Time, D, isize>,
    project: fn(T) -> D,
}

impl<T: Record, D: Data> RowSession for Projected<T, D> {
    fn update(&mut self, row: Row, diff: isize) {
        match T::from_owned_row(row) {
            Ok(record) => self.session.update((self.project)(record), diff),
            Err(e) => panic!("a row reached the dataflow unvalidated: {e}"),
        }
    }
    fn advance_to(&mut self, time: Time) {
        self.session.advance_to(time);
    }
    fn flush(&mut self) {
        self.session.flush();
    }
}

/// An input relation no view reads: the store keeps its rows, the dataflow has no input for it.
struct Unread;

impl RowSession for Unread {
    fn update(&mut self, _row: Row, _diff: isize) {}
    fn advance_to(&mut self, _time: Time) {}
    fn flush(&mut self) {}
}

/// The dataflow's input relations, created as the pipelines ask for them. Each
/// pipeline asks for its inputs in its `input_specs` order; asking for another
/// relation than the next one expected panics, so the sessions line up with the
/// server's input relations.
pub struct Inputs<'s> {
    scope: Scope<'s, Time>,
    /// Every input relation, in the order they are asked for.
    expected: Vec<&'static RelationSpec>,
    sessions: Vec<Box<dyn RowSession>>,
    /// Where the history-dependent operators register (see [`crate::checkpoint`]).
    checkpoints: Checkpoints,
}

impl<'s> Inputs<'s> {
    /// Inputs in `scope` for the relations `expected`, in that order.
    pub fn new(scope: Scope<'s, Time>, expected: Vec<&'static RelationSpec>) -> Inputs<'s> {
        Inputs::with_checkpoints(scope, expected, Checkpoints::new())
    }

    /// [`Inputs::new`], its history-dependent operators registering in `checkpoints`
    /// (which may restore them).
    pub fn with_checkpoints(
        scope: Scope<'s, Time>,
        expected: Vec<&'static RelationSpec>,
        checkpoints: Checkpoints,
    ) -> Inputs<'s> {
        Inputs { scope, expected, sessions: Vec::new(), checkpoints }
    }

    /// The registry of history-dependent operators: each registers under a stable id,
    /// `inputs.checkpoints().slot("pipeline.operator")`.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// The next input relation, as records of `T`.
    pub fn records<T: Record + Data>(&mut self) -> Coll<'s, T> {
        self.projected(|record: T| record)
    }

    /// The next input relation, each record of `T` cut down to what the pipeline reads of it.
    pub fn projected<T: Record + 'static, D: Data>(&mut self, project: fn(T) -> D) -> Coll<'s, D> {
        self.expect(T::spec());
        let (session, records) = self.scope.new_collection();
        self.sessions.push(Box::new(Projected { session, project }));
        records
    }

    /// The next input relation, `spec`, which no view reads.
    pub fn unread(&mut self, spec: &'static RelationSpec) {
        self.expect(spec);
        self.sessions.push(Box::new(Unread));
    }

    fn expect(&self, spec: &'static RelationSpec) {
        let next = self.sessions.len();
        match self.expected.get(next) {
            Some(expected) if std::ptr::eq(*expected, spec) => {}
            other => panic!(
                "input {next} asked for as {}, but the input relations list {}",
                spec.name,
                other.map_or("no more", |s| s.name)
            ),
        }
    }

    /// How many input relations have been asked for.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// One session per input relation, in their order.
    pub fn into_sessions(self) -> Vec<Box<dyn RowSession>> {
        assert_eq!(self.sessions.len(), self.expected.len(), "every input relation asked for");
        self.sessions
    }
}

/// Reads a view's changes off the sink's input, each as a row: `read(emit)` calls
/// `emit(row, time, diff)` for every change that has arrived.
pub type ViewRows = Box<dyn FnMut(&mut dyn FnMut(Row, Time, isize))>;

/// Adds a view as an input of the sink an `OperatorBuilder` builds; see [`View::connect`].
type Connect<'s> = Box<dyn FnOnce(&mut OperatorBuilder<'s, Time>) -> ViewRows + 's>;

/// A view as its pipeline hands it over: which view it is (its spec), its changes as
/// records, and how a record is written as a row of the view.
pub struct View<'s> {
    spec: &'static RelationSpec,
    connect: Connect<'s>,
}

impl<'s> View<'s> {
    /// The view of the records `record(d)` for the `d` of `records`: the view `R` declares.
    pub fn new<D: ExchangeData, R: Record + 'static>(
        records: Coll<'s, D>,
        record: impl Fn(D) -> R + 'static,
    ) -> View<'s> {
        View::filter_map(records, move |d| Some(record(d)))
    }

    /// The view of the records `record(d)` for the `d` of `records` it is `Some` for.
    pub fn filter_map<D: ExchangeData, R: Record + 'static>(
        records: Coll<'s, D>,
        record: impl Fn(D) -> Option<R> + 'static,
    ) -> View<'s> {
        View {
            spec: R::spec(),
            connect: Box::new(move |builder| {
                let mut input = builder.new_input(records.inner, Exchange::new(|_: &(D, Time, isize)| 0));
                Box::new(move |emit| {
                    input.for_each(|_capability, changes| {
                        for (d, time, diff) in changes.drain(..) {
                            if let Some(record) = record(d) {
                                emit(record.into_row(), time, diff);
                            }
                        }
                    })
                })
            }),
        }
    }

    /// The view of `records`, the view `R` declares.
    pub fn of_records<R: Record + ExchangeData>(records: Coll<'s, R>) -> View<'s> {
        View::new(records, |record| record)
    }

    /// Which view this is.
    pub fn spec(&self) -> &'static RelationSpec {
        self.spec
    }

    /// Makes the view an input of the sink `builder` builds, every change sent to
    /// worker 0. The sink reads the view's changes with the returned function; the
    /// input's frontier is the builder's next.
    pub fn connect(self, builder: &mut OperatorBuilder<'s, Time>) -> ViewRows {
        (self.connect)(builder)
    }
}
