import java.io.File;
import java.util.List;
import java.util.stream.Collectors;

import org.semanticweb.owlapi.apibinding.OWLManager;
import org.semanticweb.owlapi.io.OWLOntologyLoaderMetaData;
import org.semanticweb.owlapi.model.OWLOntology;
import org.semanticweb.owlapi.model.OWLOntologyManager;
import org.semanticweb.owlapi.profiles.OWL2DLProfile;
import org.semanticweb.owlapi.profiles.OWLProfileViolation;

/**
 * Loads each ontology file named on the command line with the OWL API (the library Protégé uses) and
 * prints one line per file: {@code RESULT <file> unparsed=<n> guessed=<n> violations=<n>}, followed by
 * one {@code DETAIL} line per problem.
 *
 * Why: rdflib accepts any RDF, but an axiom the OWL API cannot map (an unparsed triple), a
 * declaration it has to guess, or an OWL 2 DL profile violation means Protégé and HermiT see a
 * different ontology than the Turtle suggests. tests/test_ontology.py asserts the counts are zero.
 * Each file gets its own manager, so files never see each other's declarations.
 */
public class OwlApiCheck {
    public static void main(String[] args) throws Exception {
        for (String path : args) {
            OWLOntologyManager manager = OWLManager.createOWLOntologyManager();
            OWLOntology ontology = manager.loadOntologyFromOntologyDocument(new File(path));
            OWLOntologyLoaderMetaData meta = manager.getOntologyFormat(ontology)
                    .getOntologyLoaderMetaData()
                    .orElseThrow(() -> new IllegalStateException("no loader metadata for " + path));
            List<String> unparsed = meta.getUnparsedTriples().map(Object::toString).collect(Collectors.toList());
            List<String> guessed = meta.getGuessedDeclarations().entries().stream()
                    .map(e -> e.getKey() + " as " + e.getValue().getSimpleName()).collect(Collectors.toList());
            List<OWLProfileViolation> violations = new OWL2DLProfile().checkOntology(ontology).getViolations();
            System.out.printf("RESULT %s unparsed=%d guessed=%d violations=%d%n",
                    path, unparsed.size(), guessed.size(), violations.size());
            unparsed.forEach(t -> System.out.println("DETAIL unparsed triple: " + t));
            guessed.forEach(g -> System.out.println("DETAIL guessed declaration: " + g));
            violations.forEach(v -> System.out.println("DETAIL profile violation: " + v));
        }
    }
}
